//! Broker options on the command line, for commands that talk to Kafka without an app
//! (`faststream publish`, `faststream request`): the servers, TLS, SASL and raw librdkafka
//! properties, mapped onto [`KafkaBroker`], [`Security`] and [`Tls`].

use crate::kafka::{KafkaBroker, Security, Tls};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// The environment variable read for the SASL password when `--sasl-password` is not given
/// (so that it need not appear in the process list).
pub const SASL_PASSWORD_ENV: &str = "KAFKA_SASL_PASSWORD";

/// The environment variable read for the servers when `--bootstrap-servers` is not given.
pub const BOOTSTRAP_SERVERS_ENV: &str = "KAFKA_BOOTSTRAP_SERVERS";

/// A SASL mechanism, as FastStream's security classes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslOption {
    /// `SASLPlaintext`: user and password (PLAIN).
    #[value(name = "PLAIN", alias = "plain")]
    Plain,
    /// `SASLScram256`.
    #[value(name = "SCRAM-SHA-256", alias = "scram-sha-256")]
    ScramSha256,
    /// `SASLScram512`.
    #[value(name = "SCRAM-SHA-512", alias = "scram-sha-512")]
    ScramSha512,
}

/// The broker options.
#[derive(Debug, Clone, Default, Args)]
pub struct BrokerArgs {
    /// Kafka's bootstrap servers [default: KAFKA_BOOTSTRAP_SERVERS, else localhost:9092].
    #[arg(long, short = 'b', value_name = "HOST:PORT,...")]
    pub bootstrap_servers: Option<String>,
    /// Authenticate with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with --sasl-username).
    #[arg(long, value_enum, value_name = "MECHANISM", requires = "sasl_username")]
    pub sasl_mechanism: Option<SaslOption>,
    /// The SASL user.
    #[arg(long, value_name = "USER", requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,
    /// The SASL password [default: KAFKA_SASL_PASSWORD].
    #[arg(long, value_name = "PASSWORD", requires = "sasl_mechanism")]
    pub sasl_password: Option<String>,
    /// Connect over TLS (implied by the other --ssl-* options).
    #[arg(long)]
    pub ssl: bool,
    /// Trust this CA (PEM) rather than the system's store.
    #[arg(long, value_name = "PEM FILE")]
    pub ssl_ca_file: Option<PathBuf>,
    /// The client certificate (PEM) for mutual TLS, with --ssl-key-file.
    #[arg(long, value_name = "PEM FILE", requires = "ssl_key_file")]
    pub ssl_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PEM FILE", requires = "ssl_cert_file")]
    pub ssl_key_file: Option<PathBuf>,
    /// Do not verify the broker's certificate (development only).
    #[arg(long)]
    pub ssl_no_verify: bool,
    /// A librdkafka property `KEY=VALUE` (repeatable); wins over the options above.
    #[arg(long = "property", short = 'X', value_name = "KEY=VALUE", value_parser = super::parse_header)]
    pub properties: Vec<(String, String)>,
}

/// Broker options that do not make a broker.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadBrokerOptions(String);

impl BrokerArgs {
    fn tls(&self) -> Option<Tls> {
        let wanted = self.ssl
            || self.ssl_ca_file.is_some()
            || self.ssl_cert_file.is_some()
            || self.ssl_no_verify;
        if !wanted {
            return None;
        }
        let mut tls = Tls::new();
        if let Some(ca) = &self.ssl_ca_file {
            tls = tls.ca_file(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.ssl_cert_file, &self.ssl_key_file) {
            tls = tls.client_cert_files(cert.clone(), key.clone());
        }
        if self.ssl_no_verify {
            tls = tls.no_verify();
        }
        Some(tls)
    }

    /// The security these options ask for.
    pub fn security(&self) -> Result<Security, BadBrokerOptions> {
        let tls = self.tls();
        let Some(mechanism) = self.sasl_mechanism else {
            return Ok(tls.map_or_else(Security::plaintext, Security::ssl));
        };
        let username = self.sasl_username.clone().unwrap_or_default();
        let password = match &self.sasl_password {
            Some(password) => password.clone(),
            None => std::env::var(SASL_PASSWORD_ENV).map_err(|_| {
                BadBrokerOptions(format!(
                    "--sasl-mechanism needs a password: --sasl-password or {SASL_PASSWORD_ENV}"
                ))
            })?,
        };
        let security = match mechanism {
            SaslOption::Plain => Security::plain(username, password),
            SaslOption::ScramSha256 => Security::scram256(username, password),
            SaslOption::ScramSha512 => Security::scram512(username, password),
        };
        Ok(match tls {
            Some(tls) => security.with_ssl(tls),
            None => security,
        })
    }

    /// The servers: the option, else `KAFKA_BOOTSTRAP_SERVERS`, else `localhost:9092`.
    pub fn servers(&self) -> String {
        self.bootstrap_servers
            .clone()
            .or_else(|| std::env::var(BOOTSTRAP_SERVERS_ENV).ok())
            .unwrap_or_else(|| "localhost:9092".to_owned())
    }

    /// The broker these options describe.
    pub fn broker(&self) -> Result<KafkaBroker, BadBrokerOptions> {
        let mut broker = KafkaBroker::new(self.servers()).security(self.security()?);
        for (key, value) in &self.properties {
            broker = broker.set(key.clone(), value.clone());
        }
        Ok(broker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    fn parse(args: &[&str]) -> Result<BrokerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied())).map(|c| c.broker)
    }

    #[test]
    fn sasl_and_tls_options_make_the_security() {
        let args = parse(&[
            "-b",
            "k:9095",
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "alice",
            "--sasl-password",
            "s",
            "--ssl-ca-file",
            "/ca.pem",
        ])
        .unwrap();
        let security = args.security().unwrap();
        assert_eq!(security.protocol(), "SASL_SSL");
        assert_eq!(args.servers(), "k:9095");
        let plain = parse(&[
            "--sasl-mechanism",
            "plain",
            "--sasl-username",
            "a",
            "--sasl-password",
            "p",
        ])
        .unwrap();
        assert_eq!(plain.security().unwrap().protocol(), "SASL_PLAINTEXT");
        assert_eq!(
            parse(&["--ssl"]).unwrap().security().unwrap().protocol(),
            "SSL"
        );
        assert_eq!(
            parse(&[]).unwrap().security().unwrap().protocol(),
            "PLAINTEXT"
        );
    }

    #[test]
    fn half_given_options_are_refused() {
        assert!(parse(&["--sasl-mechanism", "PLAIN"]).is_err(), "no user");
        assert!(parse(&["--sasl-username", "a"]).is_err(), "no mechanism");
        assert!(parse(&["--ssl-cert-file", "c.pem"]).is_err(), "no key");
        assert!(parse(&["--sasl-mechanism", "GSSAPI", "--sasl-username", "a"]).is_err());
        let props = parse(&["-X", "client.id=cli", "-X", "linger.ms=0"]).unwrap();
        assert_eq!(props.properties.len(), 2);
    }
}

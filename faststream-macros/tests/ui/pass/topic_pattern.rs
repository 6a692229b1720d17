// `pattern = "..."`: every topic matching a template, its parameters through `Path`.
#![deny(warnings)]
use faststream::pattern::Path;
use faststream::{publisher, subscriber};

mod patterns {
    pub const LOGS: &str = "logs.{service}.{level}";
}

#[derive(faststream::Deserialize)]
#[serde(crate = "faststream::serde")]
struct Route {
    service: String,
    level: String,
}

#[subscriber(pattern = "orders-{region}", group_id = "regional")]
#[publisher("totals")]
async fn regional(Path(region): Path<String>, amount: i64) -> String {
    format!("{region}:{amount}")
}

#[subscriber(pattern = patterns::LOGS)]
async fn logs(Path(route): Path<Route>, line: String) -> String {
    format!("{}/{}: {line}", route.service, route.level)
}

// A regular expression (it starts with `^`), its named groups as parameters.
#[subscriber(pattern = r"^audit-(?P<team>[a-z]+)\..*")]
async fn audit(Path(team): Path<String>, line: String) -> String {
    format!("{team}: {line}")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let config = regional::config();
    assert_eq!(config.backend.topics, [r"^orders-(.+)$"]);
    let pattern = config.backend.pattern.expect("a pattern subscriber");
    assert_eq!(pattern.template(), "orders-{region}");
    assert_eq!(pattern.captures("orders-eu"), Some(vec![("region", "eu")]));
    assert_eq!(config.backend.group_id.as_deref(), Some("regional"));
    assert_eq!(&*config.publishers[0].topic, "totals");
    assert_eq!(regional::call(Path("eu".into()), 3).await, "eu:3");

    let config = logs::config();
    assert_eq!(
        config.backend.pattern.map(|p| p.template().to_owned()).as_deref(),
        Some("logs.{service}.{level}")
    );
    let route = Route {
        service: "api".into(),
        level: "warn".into(),
    };
    assert_eq!(logs::call(Path(route), "slow".into()).await, "api/warn: slow");

    let config = audit::config();
    assert_eq!(config.backend.topics, [r"^audit-([a-z]+)\..*"]);
    let pattern = config.backend.pattern.expect("a pattern subscriber");
    assert_eq!(pattern.captures("audit-billing.2026"), Some(vec![("team", "billing")]));
}

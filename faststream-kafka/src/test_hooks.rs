//! Hooks for tests that drive the Kafka client into states a healthy cluster never shows
//! (feature `test-hooks`, off by default: products never enable it).

use crate::KafkaBroker;
use faststream_core::{Error, ErrorClass, Result};
use rdkafka::producer::Producer as _;

impl KafkaBroker {
    /// Fault injection for tests: puts the producer in a fatal error state, as a fenced or
    /// out-of-sequence idempotent producer would be (librdkafka's
    /// `rd_kafka_test_fatal_error`). A running app then stops with [`Error::Fatal`] naming
    /// `reason`.
    ///
    /// Only with the `test-hooks` feature, which tests enable and products never should.
    pub fn inject_fatal_error(&self, reason: &str) -> Result<()> {
        let publisher = self.shared_publisher()?;
        let reason = std::ffi::CString::new(reason)
            .map_err(|err| Error::config("a fault reason must not contain NUL", err))?;
        // SAFETY: the client pointer is valid while `publisher` lives; librdkafka copies the
        // reason string.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                publisher.producer().client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            )
        };
        if code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(Error::broker_msg(
                format!("fault injection refused: {code:?}"),
                ErrorClass::Fatal,
            ))
        }
    }
}

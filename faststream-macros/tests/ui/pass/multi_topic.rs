// Several topics, bare-identifier option values, a public handler in a module.
#![deny(warnings)]
mod handlers {
    use faststream::subscriber;

    /// Counts orders and refunds.
    #[subscriber("orders", "refunds", ack_policy = manual, auto_offset_reset = earliest)]
    pub async fn count(body: Vec<u8>, ack: faststream::Ack) {
        let _ = body.len();
        ack.ack();
    }
}

fn main() {
    let config = handlers::count::config();
    assert_eq!(config.backend.topics, ["orders", "refunds"]);
    assert_eq!(config.delivery.ack_policy, Some(faststream::AckPolicy::Manual));
    assert_eq!(
        config.backend.auto_offset_reset,
        Some(faststream::OffsetReset::Earliest)
    );
}

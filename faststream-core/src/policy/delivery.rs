//! A subscriber's delivery policy: its commit timing and its failure handling, each resolved
//! separately from the most specific level that sets it (the subscriber, its routers inner
//! first, the app).

use super::ack::{AckPolicy, Backoff, CommitTiming};
use super::error_policy::ErrorPolicy;

/// The policies one level sets: a subscriber
/// ([`SubscriberConfig::ack_policy`](crate::SubscriberConfig::ack_policy) and
/// [`error_policy`](crate::SubscriberConfig::error_policy)), a router or the app (their
/// defaults). `None` inherits from the next, less specific level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyLevel {
    /// The ack policy: its commit timing, and for `AckAfter`, `NackOnError` and
    /// `RejectOnError` its failure preset too ([`AckPolicy::sets_failure_handling`]).
    pub ack_policy: Option<AckPolicy>,
    /// The error policy: the failure handling, over this level's ack-policy preset.
    pub error_policy: Option<ErrorPolicy>,
}

impl PolicyLevel {
    /// Whether it sets nothing (everything is inherited).
    pub fn is_empty(&self) -> bool {
        self.ack_policy.is_none() && self.error_policy.is_none()
    }

    /// The failure handling this level sets, if any: its error policy, else its ack policy's
    /// preset when that policy says how failures are handled.
    fn failure(&self, backoff: Backoff) -> Option<ErrorPolicy> {
        match (&self.error_policy, self.ack_policy) {
            (Some(policy), _) => Some(policy.clone()),
            (None, Some(ack)) if ack.sets_failure_handling() => {
                Some(ErrorPolicy::preset(ack, backoff))
            }
            (None, _) => None,
        }
    }
}

/// How a subscriber delivers: when offsets are committed, and what happens to a failed
/// message. Resolved once per subscriber when it starts
/// ([`SubscriberConfig::delivery_policy`](crate::SubscriberConfig::delivery_policy)) and
/// printed in its start line.
///
/// ```
/// use faststream_core::policy::{AckPolicy, CommitTiming, DeliveryPolicy, ErrorPolicy, PolicyLevel};
/// use faststream_core::Backoff;
///
/// // An app-wide error policy, and a subscriber that set `NackOnError`.
/// let subscriber = PolicyLevel { ack_policy: Some(AckPolicy::NackOnError), error_policy: None };
/// let app = PolicyLevel { ack_policy: None, error_policy: Some(ErrorPolicy::retry(1)) };
/// let policy = DeliveryPolicy::resolve(&[subscriber, app], Backoff::default());
/// assert_eq!(policy.commit, CommitTiming::AfterHandler);
/// assert_eq!(policy.failure.max_attempts, None, "the subscriber's NackOnError retries");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryPolicy {
    /// When offsets are committed: from the most specific ack policy set.
    pub commit: CommitTiming,
    /// What happens to a failed message: from the most specific level that sets an error
    /// policy or an ack policy with a failure preset.
    pub failure: ErrorPolicy,
}

impl DeliveryPolicy {
    /// Resolves the policy from `levels`, most specific first (the subscriber, its routers
    /// inner first, the app); `backoff` is the subscriber's, used by ack-policy presets.
    /// Each half is resolved separately:
    ///
    /// - **commit timing**: the first level with an ack policy; after the handler when none.
    /// - **failure handling**: the first level with an error policy, or with an ack policy
    ///   that has a failure preset (`AckAfter`, `NackOnError`, `RejectOnError`); at one level
    ///   its error policy wins over its ack policy. `AckFirst` and `Manual` set only the
    ///   commit timing, so an inherited error policy (e.g. the app's `then_dead_letter()`)
    ///   still applies to them. When no level sets any, the preset of the resolved ack
    ///   policy ([`ErrorPolicy::preset`]).
    ///
    /// ```
    /// use faststream_core::policy::{AckPolicy, CommitTiming, DeliveryPolicy, ErrorPolicy, PolicyLevel};
    /// use faststream_core::{Backoff, Exhausted};
    ///
    /// let manual = PolicyLevel { ack_policy: Some(AckPolicy::Manual), error_policy: None };
    /// let app = PolicyLevel { ack_policy: None, error_policy: Some(ErrorPolicy::retry(3).then_dead_letter()) };
    /// let policy = DeliveryPolicy::resolve(&[manual, app], Backoff::default());
    /// assert_eq!(policy.commit, CommitTiming::ByHandler);
    /// assert_eq!(policy.failure.exhausted, Exhausted::DeadLetter { topic: None });
    /// ```
    pub fn resolve(levels: &[PolicyLevel], backoff: Backoff) -> Self {
        let ack = levels
            .iter()
            .find_map(|level| level.ack_policy)
            .unwrap_or_default();
        let failure = levels
            .iter()
            .find_map(|level| level.failure(backoff))
            .unwrap_or_else(|| ErrorPolicy::preset(ack, backoff));
        Self {
            commit: ack.commit_timing(),
            failure,
        }
    }
}

/// One line for the subscriber's start line, e.g. `commit after the handler; on failure: up
/// to 3 attempts (backoff 100ms to 10s, jittered), then dead letter to {topic}-dlt`.
impl std::fmt::Display for DeliveryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; on failure: {}", self.commit, self.failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Exhausted;

    fn ack(policy: AckPolicy) -> PolicyLevel {
        PolicyLevel {
            ack_policy: Some(policy),
            error_policy: None,
        }
    }

    fn errors(policy: ErrorPolicy) -> PolicyLevel {
        PolicyLevel {
            ack_policy: None,
            error_policy: Some(policy),
        }
    }

    fn resolve(levels: &[PolicyLevel]) -> DeliveryPolicy {
        DeliveryPolicy::resolve(levels, Backoff::default())
    }

    fn preset(policy: AckPolicy) -> ErrorPolicy {
        ErrorPolicy::preset(policy, Backoff::default())
    }

    fn skip_after_one() -> ErrorPolicy {
        ErrorPolicy::retry(1).then_skip()
    }

    #[test]
    fn nothing_set_is_the_default_ack_policy() {
        let policy = resolve(&[PolicyLevel::default(), PolicyLevel::default()]);
        assert_eq!(policy, DeliveryPolicy::default());
        assert_eq!(policy.commit, CommitTiming::AfterHandler);
        assert_eq!(policy.failure, preset(AckPolicy::AckAfter));
        assert_eq!(resolve(&[]), DeliveryPolicy::default());
    }

    #[test]
    fn a_subscribers_ack_policy_beats_an_app_error_policy() {
        // The issue's case: the app's `retry(1).then_skip()` must not replace the
        // subscriber's NackOnError.
        let policy = resolve(&[ack(AckPolicy::NackOnError), errors(skip_after_one())]);
        assert_eq!(policy.commit, CommitTiming::AfterHandler);
        assert_eq!(policy.failure, preset(AckPolicy::NackOnError));
        // AckAfter and RejectOnError set failure handling too.
        for own in [AckPolicy::AckAfter, AckPolicy::RejectOnError] {
            let policy = resolve(&[ack(own), errors(ErrorPolicy::retry(5).then_stop())]);
            assert_eq!(policy.failure, preset(own), "{own:?}");
        }
    }

    #[test]
    fn a_subscribers_error_policy_beats_everything() {
        let own = PolicyLevel {
            ack_policy: Some(AckPolicy::NackOnError),
            error_policy: Some(ErrorPolicy::retry(2).then_dead_letter()),
        };
        let policy = resolve(&[
            own,
            ack(AckPolicy::RejectOnError),
            errors(ErrorPolicy::retry(9)),
        ]);
        assert_eq!(policy.failure, ErrorPolicy::retry(2).then_dead_letter());
        assert_eq!(policy.commit, CommitTiming::AfterHandler);
    }

    #[test]
    fn router_between_subscriber_and_app() {
        let router = PolicyLevel {
            ack_policy: Some(AckPolicy::NackOnError),
            error_policy: None,
        };
        let app = PolicyLevel {
            ack_policy: Some(AckPolicy::AckFirst),
            error_policy: Some(ErrorPolicy::retry(3).then_dead_letter()),
        };
        // Nothing on the subscriber: the router's NackOnError, for both halves.
        let policy = resolve(&[PolicyLevel::default(), router.clone(), app.clone()]);
        assert_eq!(policy.commit, CommitTiming::AfterHandler);
        assert_eq!(policy.failure, preset(AckPolicy::NackOnError));
        // A router's error policy beats the app's ack preset and error policy.
        let router = errors(ErrorPolicy::retry(2));
        let policy = resolve(&[PolicyLevel::default(), router, app.clone()]);
        assert_eq!(policy.failure, ErrorPolicy::retry(2));
        assert_eq!(
            policy.commit,
            CommitTiming::BeforeHandler,
            "the app's AckFirst"
        );
        // An inner router's setting beats an outer one's.
        let policy = resolve(&[
            PolicyLevel::default(),
            ack(AckPolicy::RejectOnError),
            ack(AckPolicy::NackOnError),
            app,
        ]);
        assert_eq!(policy.failure, preset(AckPolicy::RejectOnError));
    }

    #[test]
    fn manual_keeps_the_inherited_dead_letter() {
        let app = errors(ErrorPolicy::retry(3).then_dead_letter());
        let policy = resolve(&[ack(AckPolicy::Manual), app]);
        assert_eq!(policy.commit, CommitTiming::ByHandler);
        assert_eq!(policy.failure, ErrorPolicy::retry(3).then_dead_letter());
        // Nothing inherited: Manual's own preset (a nack retries).
        let policy = resolve(&[ack(AckPolicy::Manual), PolicyLevel::default()]);
        assert_eq!(policy.failure, preset(AckPolicy::Manual));
        assert!(policy.failure.needs_message());
        // Manual with an app that sets NackOnError: the app's failure handling, manual commit.
        let policy = resolve(&[ack(AckPolicy::Manual), ack(AckPolicy::NackOnError)]);
        assert_eq!(policy.commit, CommitTiming::ByHandler);
        assert_eq!(policy.failure, preset(AckPolicy::NackOnError));
    }

    #[test]
    fn ack_first_sets_commit_timing_only() {
        let policy = resolve(&[
            ack(AckPolicy::AckFirst),
            errors(ErrorPolicy::retry(2).then_dead_letter_to("dead")),
        ]);
        assert_eq!(policy.commit, CommitTiming::BeforeHandler);
        assert_eq!(
            policy.failure.exhausted,
            Exhausted::DeadLetter {
                topic: Some("dead".into())
            }
        );
        let alone = resolve(&[ack(AckPolicy::AckFirst)]);
        assert_eq!(alone.failure, preset(AckPolicy::AckFirst));
        assert_eq!(
            alone.failure.max_attempts,
            Some(1),
            "at most once by default"
        );
        // A less specific AckFirst does not override the subscriber's commit timing.
        let policy = resolve(&[ack(AckPolicy::NackOnError), ack(AckPolicy::AckFirst)]);
        assert_eq!(policy.commit, CommitTiming::AfterHandler);
    }

    #[test]
    fn the_presets_use_the_subscribers_backoff() {
        let backoff = Backoff {
            initial: std::time::Duration::from_millis(7),
            max: std::time::Duration::from_millis(70),
        };
        let policy = DeliveryPolicy::resolve(&[ack(AckPolicy::NackOnError)], backoff);
        assert_eq!(policy.failure.backoff, backoff);
    }

    #[test]
    fn displays_both_halves() {
        let policy = resolve(&[ack(AckPolicy::NackOnError)]);
        assert_eq!(
            policy.to_string(),
            "commit after the handler; on failure: retried until it succeeds (backoff 100ms to 10s), then skip"
        );
        let policy = resolve(&[
            ack(AckPolicy::Manual),
            errors(ErrorPolicy::retry(3).then_dead_letter()),
        ]);
        assert_eq!(
            policy.to_string(),
            "commit by the handler; on failure: up to 3 attempts (backoff 100ms to 10s, jittered), then dead letter to {topic}-dlt"
        );
        assert_eq!(
            resolve(&[ack(AckPolicy::AckFirst)]).to_string(),
            "commit before the handler; on failure: 1 attempt, then skip"
        );
        assert_eq!(
            resolve(&[ack(AckPolicy::Manual)]).to_string(),
            "commit by the handler; on failure: nacks retried until acked, other errors not retried (backoff 100ms to 10s), then skip"
        );
        assert_eq!(
            ErrorPolicy::retry(2).then_stop().to_string(),
            "up to 2 attempts (backoff 100ms to 10s, jittered), then stop the partition"
        );
    }
}

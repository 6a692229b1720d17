//! Where an explicitly assigned partition starts reading: [`StartFrom`] resolved into a
//! [`StartPosition`].

use crate::config::subscriber::StartFrom;

/// Where a partition starts reading, once its [`StartFrom`] is resolved: the group's
/// committed offset, one of the log's ends, or an offset. A backend with a log of known
/// bounds turns it into an offset with [`StartPosition::within`]; Kafka maps it onto
/// librdkafka's logical offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// Where the group last committed (else the subscriber's offset reset policy).
    Committed,
    /// The oldest retained record.
    Beginning,
    /// The next record produced.
    End,
    /// This offset.
    Offset(i64),
}

impl StartFrom {
    /// Resolves where to start. `offset_for_time` finds the first offset whose record has a
    /// timestamp at or after the given one (milliseconds since the Unix epoch); it is called
    /// only for [`StartFrom::Timestamp`]. When it finds none (`None` or a negative offset, as
    /// Kafka answers), the partition starts at its end.
    ///
    /// ```
    /// use faststream_core::broker::StartPosition;
    /// use faststream_core::StartFrom;
    ///
    /// let none = |_: i64| -> Option<i64> { None };
    /// assert_eq!(StartFrom::Latest.resolve(none), StartPosition::End);
    /// assert_eq!(StartFrom::Timestamp(1_700_000_000_000).resolve(|_| Some(42)), StartPosition::Offset(42));
    /// assert_eq!(StartFrom::Timestamp(1_700_000_000_000).resolve(none), StartPosition::End);
    /// ```
    pub fn resolve(self, offset_for_time: impl FnOnce(i64) -> Option<i64>) -> StartPosition {
        match self {
            StartFrom::Committed => StartPosition::Committed,
            StartFrom::Earliest => StartPosition::Beginning,
            StartFrom::Latest => StartPosition::End,
            StartFrom::Offset(offset) => StartPosition::Offset(offset),
            StartFrom::Timestamp(millis) => match offset_for_time(millis) {
                Some(offset) if offset >= 0 => StartPosition::Offset(offset),
                _ => StartPosition::End,
            },
        }
    }
}

impl StartPosition {
    /// The offset to start at in a log whose records run from `low` (the oldest retained) to
    /// `high` (the next to be written), an offset outside it clamped into it; `None` for
    /// [`StartPosition::Committed`].
    ///
    /// ```
    /// use faststream_core::broker::StartPosition;
    /// assert_eq!(StartPosition::End.within(0, 10), Some(10));
    /// assert_eq!(StartPosition::Offset(99).within(0, 10), Some(10));
    /// assert_eq!(StartPosition::Committed.within(0, 10), None);
    /// ```
    pub fn within(self, low: i64, high: i64) -> Option<i64> {
        match self {
            StartPosition::Committed => None,
            StartPosition::Beginning => Some(low),
            StartPosition::End => Some(high),
            StartPosition::Offset(offset) => Some(offset.clamp(low, high.max(low))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: i64) -> Option<i64> {
        panic!("only a timestamp is looked up")
    }

    #[test]
    fn each_start_resolves() {
        assert_eq!(
            StartFrom::Committed.resolve(never),
            StartPosition::Committed
        );
        assert_eq!(StartFrom::Earliest.resolve(never), StartPosition::Beginning);
        assert_eq!(StartFrom::Latest.resolve(never), StartPosition::End);
        assert_eq!(
            StartFrom::Offset(7).resolve(never),
            StartPosition::Offset(7)
        );
        let mut asked = None;
        let found = StartFrom::Timestamp(1_000).resolve(|t| {
            asked = Some(t);
            Some(3)
        });
        assert_eq!((found, asked), (StartPosition::Offset(3), Some(1_000)));
        assert_eq!(
            StartFrom::Timestamp(1_000).resolve(|_| None),
            StartPosition::End
        );
        assert_eq!(
            StartFrom::Timestamp(1_000).resolve(|_| Some(-1)),
            StartPosition::End,
            "Kafka's answer for no record at or after the time"
        );
    }

    #[test]
    fn positions_become_offsets_within_the_log() {
        assert_eq!(StartPosition::Committed.within(2, 9), None);
        assert_eq!(StartPosition::Beginning.within(2, 9), Some(2));
        assert_eq!(StartPosition::End.within(2, 9), Some(9));
        assert_eq!(StartPosition::Offset(5).within(2, 9), Some(5));
        assert_eq!(StartPosition::Offset(0).within(2, 9), Some(2), "clamped up");
        assert_eq!(StartPosition::Offset(-1).within(2, 9), Some(2));
        assert_eq!(
            StartPosition::Offset(50).within(2, 9),
            Some(9),
            "clamped down"
        );
        assert_eq!(
            StartPosition::Offset(3).within(0, 0),
            Some(0),
            "an empty log"
        );
    }
}

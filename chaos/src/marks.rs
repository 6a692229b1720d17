//! Which records are special (`fill`, `app` and `verify` apply the same rule).

/// Which records are special, shared by `fill`, `app` and `verify`.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct Marks {
    /// One record in this many is poison (the handler fails on it); 0 for none.
    #[arg(long, default_value_t = 0)]
    poison_every: u64,
    /// One record in this many makes an oversize output; 0 for none.
    #[arg(long, default_value_t = 0)]
    big_every: u64,
}

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Good,
    Poison,
    Big,
}

impl Marks {
    /// The kind of record `seq`: the middle one of every `poison_every` (or `big_every`)
    /// records, so the first special record is not at offset 0.
    pub fn kind(&self, seq: u64) -> Kind {
        if self.poison_every > 0 && seq % self.poison_every == self.poison_every / 2 {
            Kind::Poison
        } else if self.big_every > 0 && seq % self.big_every == self.big_every / 2 {
            Kind::Big
        } else {
            Kind::Good
        }
    }
}

//! The one place that encodes and decodes io_uring `user_data`.
//!
//! Layout (64 bits): `key:32 | generation:24 | op:8`. `key` is the connection's slab key, and
//! `generation` the value the slot had when the operation was submitted, so a completion that
//! arrives for a slot since reused is recognised and dropped. Worker-wide operations (accept, the
//! timer, wake-ups, log writes) use `key = WORKER_KEY`.

/// What kind of operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Accept = 1,
    Recv,
    Open,
    Statx,
    Read,
    Send,
    SpliceIn,
    SpliceOut,
    PollOut,
    Timer,
    Wake,
    LogWrite,
    Cancel,
    Close,
    /// A test-only delay in front of an open; its completion is ignored.
    Delay,
    /// The multishot accept on the `--metrics` listener.
    AcceptMetrics,
    /// The multishot accept on the HTTPS listener beside the plain one.
    AcceptTls,
}

impl Op {
    const ALL: [Op; 17] = [
        Op::Accept,
        Op::Recv,
        Op::Open,
        Op::Statx,
        Op::Read,
        Op::Send,
        Op::SpliceIn,
        Op::SpliceOut,
        Op::PollOut,
        Op::Timer,
        Op::Wake,
        Op::LogWrite,
        Op::Cancel,
        Op::Close,
        Op::Delay,
        Op::AcceptMetrics,
        Op::AcceptTls,
    ];

    fn from_u8(v: u8) -> Option<Op> {
        Op::ALL.get((v as usize).wrapping_sub(1)).copied()
    }
}

/// Slab key reserved for operations that belong to the worker rather than a connection.
pub const WORKER_KEY: u32 = u32::MAX;

const GEN_MASK: u32 = (1 << 24) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub key: u32,
    pub generation: u32,
    pub op: Op,
}

impl Token {
    pub fn conn(key: usize, generation: u32, op: Op) -> Token {
        Token { key: key as u32, generation: generation & GEN_MASK, op }
    }

    pub fn worker(op: Op) -> Token {
        Token { key: WORKER_KEY, generation: 0, op }
    }

    pub fn encode(self) -> u64 {
        (u64::from(self.key) << 32) | (u64::from(self.generation & GEN_MASK) << 8) | self.op as u64
    }

    /// `None` for user_data this server never produced.
    pub fn decode(data: u64) -> Option<Token> {
        let op = Op::from_u8(data as u8)?;
        Some(Token { key: (data >> 32) as u32, generation: ((data >> 8) as u32) & GEN_MASK, op })
    }

    /// Generations wrap within 24 bits; this is the successor used when a slot is reused.
    pub fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & GEN_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_op_and_extreme_values() {
        for op in Op::ALL {
            for (key, generation) in [(0usize, 0u32), (12345, 77), (u32::MAX as usize - 1, GEN_MASK)] {
                let t = Token::conn(key, generation, op);
                assert_eq!(Token::decode(t.encode()), Some(t));
            }
        }
        let w = Token::worker(Op::Timer);
        assert_eq!(Token::decode(w.encode()), Some(w));
    }

    #[test]
    fn rejects_unknown_ops_and_wraps_generations() {
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(0xff), None);
        assert_eq!(Token::next_generation(GEN_MASK), 0);
    }
}

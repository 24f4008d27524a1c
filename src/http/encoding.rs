//! Content negotiation for precompressed files (RFC 9110 §12.5.3): which of the available
//! codings, if any, the client's Accept-Encoding prefers.

/// The precompressed codings looked for beside a file, in order of preference on a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    pub const ALL: [Coding; 2] = [Coding::Br, Coding::Gzip];

    pub fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The suffix of the file holding this coding of a representation.
    pub fn suffix(self) -> &'static [u8] {
        match self {
            Coding::Br => b".br",
            Coding::Gzip => b".gz",
        }
    }
}

/// The q-value Accept-Encoding gives `coding` (an explicit entry wins over `*`); 0 if absent.
fn quality(accept: &str, coding: Coding) -> u16 {
    let mut explicit = None;
    let mut wildcard = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
            .map_or(Some(1000), parse_q);
        let Some(q) = q else { continue };
        if name.eq_ignore_ascii_case(coding.token())
            || (coding == Coding::Gzip && name.eq_ignore_ascii_case("x-gzip"))
        {
            explicit = Some(q);
        } else if name == "*" {
            wildcard = Some(q);
        }
    }
    explicit.or(wildcard).unwrap_or(0)
}

/// A qvalue (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The available coding the client prefers; `None` means send the file as it is.
pub fn preferred(accept: Option<&str>, available: impl Fn(Coding) -> bool) -> Option<Coding> {
    let accept = accept?;
    let mut best: Option<(Coding, u16)> = None;
    for coding in Coding::ALL {
        let q = quality(accept, coding);
        if q > 0 && available(coding) && best.is_none_or(|(_, bq)| q > bq) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::Coding::*;
    use super::*;

    fn pick(ae: Option<&str>) -> Option<Coding> {
        preferred(ae, |_| true)
    }

    #[test]
    fn negotiation() {
        assert_eq!(pick(None), None);
        assert_eq!(pick(Some("gzip")), Some(Gzip));
        assert_eq!(pick(Some("gzip, deflate, br")), Some(Br));
        assert_eq!(pick(Some("br;q=0.5, gzip;q=1")), Some(Gzip));
        assert_eq!(pick(Some("gzip;q=0")), None);
        assert_eq!(pick(Some("identity")), None);
        assert_eq!(pick(Some("*")), Some(Br));
        assert_eq!(pick(Some("*;q=0.1, br;q=0")), Some(Gzip));
        assert_eq!(pick(Some("gzip;q=1.5")), None);
        assert_eq!(pick(Some("GZIP; Q=0.8")), Some(Gzip));
        assert_eq!(preferred(Some("br"), |c| c == Gzip), None);
        assert_eq!(preferred(Some("br, gzip"), |c| c == Gzip), Some(Gzip));
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("0.25"), Some(250));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("1.1"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("x"), None);
    }
}

//! Prometheus text exposition (format 0.0.4) written into caller-provided
//! bytes: family headers, samples with escaped labels, and overflow detection.

use core::fmt::{self, Write};

/// A metric family's type, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever rises (since boot).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// Text written into a fixed buffer; once something does not fit, every
/// later write fails and `finish` says so.
pub struct Text<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Text<'a> {
    /// An empty text over `buf`.
    pub fn new(buf: &'a mut [u8]) -> Text<'a> {
        Text {
            buf,
            len: 0,
            overflow: false,
        }
    }

    /// The length written, or `None` if something did not fit.
    pub fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.len)
    }

    /// Writes `# HELP` and `# TYPE` for the family `name`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> fmt::Result {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        self.write_str("# HELP ")?;
        self.write_str(name)?;
        self.write_char(' ')?;
        // HELP text escapes backslash and newline.
        for c in help.chars() {
            match c {
                '\\' => self.write_str("\\\\")?,
                '\n' => self.write_str("\\n")?,
                c => self.write_char(c)?,
            }
        }
        write!(self, "\n# TYPE {name} {kind}\n")
    }

    /// Writes one sample: `name{label="value",...} value`, label values
    /// escaped.
    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &dyn fmt::Display)],
        value: impl fmt::Display,
    ) -> fmt::Result {
        self.write_str(name)?;
        if !labels.is_empty() {
            self.write_char('{')?;
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.write_char(',')?;
                }
                write!(self, "{label}=\"")?;
                write!(Escaped(self), "{v}")?;
                self.write_char('"')?;
            }
            self.write_char('}')?;
        }
        writeln!(self, " {value}")
    }

    /// A family of one unlabelled sample.
    pub fn single(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        value: impl fmt::Display,
    ) -> fmt::Result {
        self.family(name, kind, help)?;
        self.sample(name, &[], value)
    }
}

impl Write for Text<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if self.overflow || end > self.buf.len() {
            self.overflow = true;
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Escapes a label value: backslash, double quote and newline.
struct Escaped<'t, 'a>(&'t mut Text<'a>);

impl Write for Escaped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\\' => self.0.write_str("\\\\")?,
                '"' => self.0.write_str("\\\"")?,
                '\n' => self.0.write_str("\\n")?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Seconds from milliseconds, printed with three decimals and no float.
pub struct Millis(pub u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_labels_and_help() {
        let mut buf = [0u8; 256];
        let mut t = Text::new(&mut buf);
        t.family("pias_x_total", Kind::Counter, "a \\ b\nc")
            .unwrap();
        t.sample("pias_x_total", &[("name", &"q\"\\\n"), ("n", &7)], 3)
            .unwrap();
        let n = t.finish().unwrap();
        assert_eq!(
            core::str::from_utf8(&buf[..n]).unwrap(),
            "# HELP pias_x_total a \\\\ b\\nc\n# TYPE pias_x_total counter\n\
             pias_x_total{name=\"q\\\"\\\\\\n\",n=\"7\"} 3\n"
        );
    }

    #[test]
    fn overflow_is_reported_and_sticks() {
        let mut buf = [0u8; 10];
        let mut t = Text::new(&mut buf);
        assert!(t.write_str("0123456789").is_ok());
        assert!(t.write_str("x").is_err());
        assert!(t.write_str("").is_err(), "a later write fails too");
        assert_eq!(t.finish(), None);
        let mut buf = [0u8; 10];
        let mut t = Text::new(&mut buf);
        t.write_str("0123456789").unwrap();
        assert_eq!(t.finish(), Some(10), "exactly full is not overflow");
    }

    #[test]
    fn millis_print_as_seconds() {
        assert_eq!(format!("{}", Millis(0)), "0.000");
        assert_eq!(format!("{}", Millis(1_234_567)), "1234.567");
        assert_eq!(format!("{}", Millis(u64::MAX)), "18446744073709551.615");
    }
}

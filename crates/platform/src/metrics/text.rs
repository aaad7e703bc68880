//! Writing the Prometheus text exposition format.

use std::fmt::{Display, Write as _};

/// A metrics page being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family with its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, value)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values may hold anything a client named its operation.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values() {
        let mut page = Exposition::default();
        page.family("x_total", "counter", "Things.\nMore");
        page.sample("x_total", &[("a", "say \"hi\"\\\n"), ("b", "2")], 3);
        page.sample("y", &[], 1.5);
        assert_eq!(
            page.finish(),
            "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total{a=\"say \\\"hi\\\"\\\\\\n\",b=\"2\"} 3\ny 1.5\n"
        );
    }
}

//! A latency histogram with fixed buckets.

use std::time::Duration;

use super::text::Exposition;

/// Upper bounds in seconds: from a cached read to a slow report.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Observations per bucket (not cumulative), their sum and count.
#[derive(Default)]
pub struct Histogram {
    buckets: [u64; BUCKETS.len()],
    sum: Duration,
    count: u64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(index) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[index] += 1;
        }
        self.sum = self.sum.saturating_add(elapsed);
        self.count += 1;
    }

    /// Writes `_bucket` (cumulative, ending with `+Inf`), `_sum` and
    /// `_count` lines; nothing when there were no observations.
    pub fn render(&self, out: &mut Exposition, name: &str, labels: &[(&str, &str)]) {
        if self.count == 0 {
            return;
        }
        let bucket_name = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(self.buckets) {
            cumulative += count;
            let le = bound.to_string();
            out.sample(&bucket_name, &with_label(labels, ("le", &le)), cumulative);
        }
        out.sample(&bucket_name, &with_label(labels, ("le", "+Inf")), self.count);
        out.sample(&format!("{name}_sum"), labels, self.sum.as_secs_f64());
        out.sample(&format!("{name}_count"), labels, self.count);
    }
}

fn with_label<'a>(labels: &[(&'a str, &'a str)], extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    let mut all = labels.to_vec();
    all.push(extra);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_with_inf() {
        let mut histogram = Histogram::default();
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(70));
        histogram.observe(Duration::from_secs(60));
        let mut page = Exposition::default();
        histogram.render(&mut page, "d", &[("op", "Me")]);
        let page = page.finish();
        assert!(page.contains("d_bucket{op=\"Me\",le=\"0.005\"} 1\n"), "{page}");
        assert!(page.contains("d_bucket{op=\"Me\",le=\"0.05\"} 1\n"), "{page}");
        assert!(page.contains("d_bucket{op=\"Me\",le=\"0.1\"} 2\n"), "{page}");
        assert!(page.contains("d_bucket{op=\"Me\",le=\"30\"} 2\n"), "{page}");
        assert!(page.contains("d_bucket{op=\"Me\",le=\"+Inf\"} 3\n"), "{page}");
        assert!(page.contains("d_sum{op=\"Me\"} 60.07"), "{page}");
        assert!(page.contains("d_count{op=\"Me\"} 3\n"), "{page}");
    }

    #[test]
    fn an_empty_histogram_writes_nothing() {
        let mut page = Exposition::default();
        Histogram::default().render(&mut page, "d", &[]);
        assert_eq!(page.finish(), "");
    }
}

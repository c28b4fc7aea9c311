//! Rewrites the OpenMetrics text that `prometheus-client` writes into the classic Prometheus
//! text format 0.0.4, for scrapers that do not ask for OpenMetrics (and for `promtool check
//! metrics`, which reads only the classic format).
//!
//! The two differ in metadata, not in samples: a classic family is named after its samples
//! (`x_total` for a counter, `x_info` for an info metric, which becomes a gauge), there is no
//! `# UNIT` line and no `# EOF` marker. Sample lines are copied unchanged; exemplars and the
//! types without a classic equivalent (stateset, gaugehistogram) are refused, not mangled.

use super::MetricsError;

/// The classic form of a family: its name and type, from its OpenMetrics name and type.
fn classic_family(name: &str, om_type: &str) -> Result<(String, &'static str), String> {
    Ok(match om_type {
        "counter" => (format!("{name}_total"), "counter"),
        "info" => (format!("{name}_info"), "gauge"),
        "gauge" => (name.to_string(), "gauge"),
        "histogram" => (name.to_string(), "histogram"),
        "summary" => (name.to_string(), "summary"),
        "unknown" => (name.to_string(), "untyped"),
        other => return Err(format!("metric type `{other}` has no classic equivalent")),
    })
}

/// `# KEYWORD name rest` → `(name, rest)`.
fn split_meta<'a>(line: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let rest = line.strip_prefix(keyword)?;
    let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((name, text))
}

/// True when a sample line carries an exemplar (` # {...}` after the value).
fn has_exemplar(sample: &str) -> bool {
    // The name ends at `{` (labels follow) or at the space before the value.
    let after_labels = match sample.find(['{', ' ']) {
        Some(open) if sample[open..].starts_with('{') => {
            let mut in_quotes = false;
            let mut escaped = false;
            let mut end = sample.len();
            for (i, c) in sample[open..].char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_quotes => escaped = true,
                    '"' => in_quotes = !in_quotes,
                    '}' if !in_quotes => {
                        end = open + i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            &sample[end..]
        }
        _ => sample,
    };
    after_labels.contains('#')
}

/// Converts a complete OpenMetrics page (ending with `# EOF`) to the classic text format.
pub fn openmetrics_to_classic(page: &str) -> Result<String, MetricsError> {
    let mut out = String::with_capacity(page.len());
    // A `# HELP` waits for its `# TYPE`, which renames the family.
    let mut pending_help: Option<(&str, String)> = None;
    let mut saw_eof = false;
    for (i, line) in page.lines().enumerate() {
        let err = |reason: String| MetricsError::Convert {
            line: i + 1,
            reason,
        };
        if saw_eof {
            return Err(err("text after `# EOF`".into()));
        }
        if let Some((name, text)) = split_meta(line, "# TYPE ") {
            let (classic, ty) = classic_family(name, text).map_err(err)?;
            if let Some((help_name, help)) = pending_help.take() {
                let help_name = if help_name == name {
                    classic.as_str()
                } else {
                    help_name
                };
                out.push_str(&format!("# HELP {help_name} {help}\n"));
            }
            out.push_str(&format!("# TYPE {classic} {ty}\n"));
            continue;
        }
        if let Some((name, help)) = pending_help.take() {
            out.push_str(&format!("# HELP {name} {help}\n"));
        }
        if let Some((name, text)) = split_meta(line, "# HELP ") {
            // OpenMetrics escapes `"` in help text; the classic format does not.
            pending_help = Some((name, text.replace("\\\"", "\"")));
        } else if line.starts_with("# UNIT ") {
            // The unit is already the name's suffix.
        } else if line == "# EOF" {
            saw_eof = true;
        } else if line.starts_with('#') {
            return Err(err(format!("unexpected comment `{line}`")));
        } else if line.is_empty() {
            return Err(err("empty line".into()));
        } else if has_exemplar(line) {
            return Err(err("exemplars have no classic equivalent".into()));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some((name, help)) = pending_help {
        out.push_str(&format!("# HELP {name} {help}\n"));
    }
    if !saw_eof {
        return Err(MetricsError::Convert {
            line: page.lines().count(),
            reason: "the page does not end with `# EOF` (truncated?)".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::encode::tests::sample_snapshot;
    use crate::metrics::encode_openmetrics;

    #[test]
    fn families_are_renamed_after_their_samples() {
        let page = encode_openmetrics(&sample_snapshot()).unwrap();
        let classic = openmetrics_to_classic(&page).unwrap();
        for line in [
            "# HELP aivideo_frames_generated_total Video frames generated by completed jobs.",
            "# TYPE aivideo_frames_generated_total counter",
            "aivideo_frames_generated_total 48",
            "# TYPE aivideo_build_info gauge",
            "aivideo_build_info{version=\"9.9.9\"} 1",
            "# TYPE aivideo_job_processing_seconds histogram",
            "aivideo_job_processing_seconds_bucket{le=\"+Inf\"} 3",
            "# TYPE aivideo_jobs gauge",
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "missing {line:?} in\n{classic}"
            );
        }
        assert!(!classic.contains("# UNIT"), "{classic}");
        assert!(!classic.contains("# EOF"), "{classic}");
        // Every sample line is kept, unchanged.
        let samples = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .map(String::from)
                .collect()
        };
        assert_eq!(samples(&page), samples(&classic));
    }

    #[test]
    fn unsupported_input_is_refused() {
        let truncated = "# HELP x X.\n# TYPE x gauge\nx 1\n";
        assert!(openmetrics_to_classic(truncated).is_err());
        let stateset = "# TYPE x stateset\nx{x=\"a\"} 1\n# EOF\n";
        assert!(openmetrics_to_classic(stateset).is_err());
        let exemplar = "# TYPE x counter\nx_total 1 # {trace_id=\"a\"} 1.0\n# EOF\n";
        assert!(openmetrics_to_classic(exemplar).is_err());
        let after_eof = "# TYPE x gauge\nx 1\n# EOF\nx 2\n";
        assert!(openmetrics_to_classic(after_eof).is_err());
    }

    #[test]
    fn hashes_inside_label_values_are_not_exemplars() {
        let page = "# TYPE x gauge\nx{name=\"GPU #1 \\\"}#\\\"\"} 1\n# EOF\n";
        let classic = openmetrics_to_classic(page).unwrap();
        assert_eq!(classic, "# TYPE x gauge\nx{name=\"GPU #1 \\\"}#\\\"\"} 1\n");
    }
}

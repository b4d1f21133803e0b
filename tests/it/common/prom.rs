//! A strict reader of the Prometheus text format (0.0.4) for the metrics
//! tests: every line must be a `# HELP`, a `# TYPE` or a sample of a family
//! declared before it; label values must be properly quoted and escaped;
//! histogram buckets must be cumulative and end in `+Inf` = `_count`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    /// Family name → type.
    pub types: HashMap<String, String>,
}

impl Scrape {
    /// Parses `text`, panicking on anything the format does not allow.
    pub fn parse(text: &str) -> Scrape {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped = HashMap::new();
        let mut samples = Vec::new();
        assert!(text.ends_with('\n'), "no final newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP text");
                assert!(valid_name(name), "bad name in {line:?}");
                assert!(!help.is_empty(), "{line:?}");
                assert!(
                    helped.insert(name.to_owned(), ()).is_none(),
                    "HELP twice: {line:?}"
                );
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE kind");
                assert!(valid_name(name), "bad name in {line:?}");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&kind),
                    "{line:?}"
                );
                assert!(
                    !samples
                        .iter()
                        .any(|s: &Sample| family_of(&s.name, &types) == name),
                    "TYPE after samples: {line:?}"
                );
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "TYPE twice: {line:?}"
                );
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
                let sample = parse_sample(line);
                let family = family_of(&sample.name, &types);
                assert!(
                    types.contains_key(family),
                    "sample of an undeclared family: {line:?}"
                );
                samples.push(sample);
            }
        }
        let scrape = Scrape { samples, types };
        scrape.check_histograms();
        scrape
    }

    /// The value of the sample `name` with exactly `labels`; 0 if absent.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map_or(0.0, |s| s.value)
    }

    /// Every value of label `label` on samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect();
        values.sort();
        values.dedup();
        values
    }

    fn check_histograms(&self) {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_bucket"))
            {
                let le = s.labels.get("le").expect("bucket without le");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le")
                };
                let mut rest = s.labels.clone();
                rest.remove("le");
                series
                    .entry(format!("{rest:?}"))
                    .or_default()
                    .push((le, s.value));
            }
            for (labels, buckets) in series {
                assert!(
                    buckets
                        .windows(2)
                        .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                    "{family}{labels}: buckets not cumulative: {buckets:?}"
                );
                let (le, last) = *buckets.last().unwrap();
                assert!(le.is_infinite(), "{family}{labels}: no +Inf bucket");
                let count = self
                    .samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}_count") && format!("{:?}", s.labels) == labels
                    })
                    .unwrap_or_else(|| panic!("{family}{labels}: no _count"));
                assert_eq!(count.value, last, "{family}{labels}: +Inf != count");
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The family a sample belongs to (histograms: without the suffix).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|k| k == "histogram") {
                return base;
            }
        }
    }
    name
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value: {line:?}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "bad name: {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek().map(|&(i, _)| i).expect("label");
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.unwrap_or_else(|| panic!("label without =: {line:?}"));
            let label = &body[start..eq];
            assert!(valid_name(label), "bad label name {label:?}: {line:?}");
            assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
            let mut value = String::new();
            loop {
                match chars.next().map(|(_, c)| c) {
                    Some('"') => break,
                    Some('\\') => match chars.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?}: {line:?}"),
                    },
                    Some(c) => value.push(c),
                    None => panic!("unterminated label value: {line:?}"),
                }
            }
            assert!(
                labels.insert(label.to_owned(), value).is_none(),
                "label twice: {line:?}"
            );
            match chars.next() {
                Some((_, ',')) => continue,
                Some((i, '}')) => {
                    rest = &body[i + 1..];
                    break;
                }
                other => panic!("expected , or }} got {other:?}: {line:?}"),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line:?}"));
    assert!(
        !value.contains(' '),
        "timestamps are not expected: {line:?}"
    );
    let value: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("bad value: {line:?}"));
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Fetches and parses `url` (an admin listener's `/metrics`).
pub async fn scrape(url: &str) -> Scrape {
    let res = super::client().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    Scrape::parse(&res.text().await.unwrap())
}

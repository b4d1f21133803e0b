//! Reading what `deploy/` ships, for the drift checks in `tests/it/deploy.rs`:
//! multi-document YAML as JSON values (yaml-rust2, YAML 1.2), kustomizations
//! with their generated ConfigMaps and Secrets, and Dockerfile instructions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file (empty ones skipped).
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    YamlLoader::load_from_str(&read(path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .iter()
        .map(to_json)
        .filter(|v| !v.is_null())
        .collect()
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Null | Yaml::BadValue => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Hash(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("unsupported YAML key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) => panic!("YAML aliases are not used in deploy/"),
    }
}

/// `value` at a JSON pointer, as a string (panics naming what is missing).
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

pub fn array_at<'a>(value: &'a Value, pointer: &str) -> &'a [Value] {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub fn int_at(value: &Value, pointer: &str) -> i64 {
    value
        .pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer at {pointer} in {value}"))
}

/// One kustomization directory, resolved: its resources, and the files of
/// its ConfigMap and Secret generators.
pub struct Kustomization {
    pub dir: PathBuf,
    /// Its `namespace:`, which kustomize sets on every resource.
    pub namespace: Option<String>,
    pub resources: Vec<Value>,
    /// Generated ConfigMap name -> key -> file text.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Generated Secret name -> keys (the files themselves are not in git).
    pub secrets: BTreeMap<String, Vec<String>>,
}

impl Kustomization {
    pub fn load(dir: &Path) -> Kustomization {
        let k = yaml_docs(&dir.join("kustomization.yaml"))
            .pop()
            .expect("a kustomization");
        assert_eq!(str_at(&k, "/kind"), "Kustomization", "{}", dir.display());
        let listed: Vec<&str> = array_at(&k, "/resources")
            .iter()
            .map(|r| r.as_str().expect("resource path"))
            .collect();
        // Every manifest in the directory is applied; nothing is forgotten.
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
            .collect();
        on_disk.sort();
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(sorted, on_disk, "resources of {}", dir.display());
        let resources = listed
            .iter()
            .flat_map(|file| yaml_docs(&dir.join(file)))
            .collect();
        let mut config_maps = BTreeMap::new();
        for generator in array_at(&k, "/configMapGenerator") {
            let files = generator_files(generator)
                .into_iter()
                .map(|(key, file)| (key, read(&dir.join(file))))
                .collect();
            config_maps.insert(str_at(generator, "/name").to_owned(), files);
        }
        let mut secrets = BTreeMap::new();
        for generator in array_at(&k, "/secretGenerator") {
            let keys = generator_files(generator)
                .into_iter()
                .map(|(key, _)| key)
                .collect();
            secrets.insert(str_at(generator, "/name").to_owned(), keys);
        }
        Kustomization {
            dir: dir.to_owned(),
            namespace: k
                .get("namespace")
                .and_then(Value::as_str)
                .map(str::to_owned),
            resources,
            config_maps,
            secrets,
        }
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.resources
            .iter()
            .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
            .collect()
    }

    pub fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "one {kind} in {}", self.dir.display());
        all[0]
    }
}

/// `files:` entries of a generator: `key=path` or `path` (key = file name).
fn generator_files(generator: &Value) -> Vec<(String, String)> {
    array_at(generator, "/files")
        .iter()
        .map(|f| {
            let f = f.as_str().expect("a file entry");
            match f.split_once('=') {
                Some((key, path)) => (key.to_owned(), path.to_owned()),
                None => (
                    Path::new(f).file_name().unwrap().to_string_lossy().into(),
                    f.to_owned(),
                ),
            }
        })
        .collect()
}

/// A Dockerfile instruction: keyword (upper case) and its arguments, with
/// continuation lines joined and comments dropped.
#[derive(Debug)]
pub struct Instruction {
    pub keyword: String,
    pub args: String,
}

pub fn dockerfile(path: &Path) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in read(path).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    out
}

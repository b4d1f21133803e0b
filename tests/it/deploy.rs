//! What can drift between the files under `deploy/` and wxgate itself:
//! every manifest is parsed, each example's embedded `gateway.toml` is
//! loaded by wxgate's own config loader (with the container's env and its
//! mounted secret files), and ports, probes, mounts, selectors, grace
//! periods, the Dockerfile and the forward-auth snippets are checked
//! against it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use wxgate::Config;

use crate::common::manifests::*;

/// The uid of the image's `USER`; pods must run as it.
const IMAGE_UID: i64 = 65532;

/// What one pod's wxgate container was found to run with.
struct Wxgate {
    config: Config,
    /// The container's ports by name.
    ports: HashMap<String, i64>,
    /// Where the config file is mounted.
    config_path: String,
    pre_stop: Duration,
}

fn kustomization(name: &str) -> Kustomization {
    Kustomization::load(&repo().join("deploy/kubernetes").join(name))
}

fn containers(deployment: &Value) -> &[Value] {
    array_at(deployment, "/spec/template/spec/containers")
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    containers(deployment)
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn pre_stop(c: &Value) -> Duration {
    Duration::from_secs(int_at(c, "/lifecycle/preStop/sleep/seconds") as u64)
}

/// The port a probe or Service names, by name or number, in `ports`.
fn resolve_port(port: &Value, ports: &HashMap<String, i64>) -> i64 {
    match port {
        Value::String(name) => *ports
            .get(name)
            .unwrap_or_else(|| panic!("no container port named {name}")),
        Value::Number(n) => n.as_i64().unwrap(),
        other => panic!("not a port: {other}"),
    }
}

/// Replicas that each remember alone are not one gateway (issue 13).
fn replicas_share_a_store(deployment: &Value, wx: &Wxgate) {
    let replicas = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if replicas > 1 {
        assert!(
            wx.config.store.redis.is_some(),
            "{replicas} replicas on the memory store: more than one replica needs the Redis store"
        );
    }
}

/// A value of the shape wxgate expects for a Secret's `key`.
fn stand_in(key: &str) -> String {
    match key {
        // base64 of 32 bytes
        "store_key" => "c3RhbmQtaW4tc3RvcmUta2V5LTAxMjM0NTY3ODlhYmM=".to_owned(),
        _ if key.ends_with("_url") => "rediss://wxgate@stand-in.invalid:6380/0".to_owned(),
        _ => format!("stand-in-for-{key}-0123456789abcdef0123456789"),
    }
}

/// Checks the wxgate container of `deployment` against its mounted config,
/// which it loads the way wxgate would inside the pod.
fn wxgate_in(k: &Kustomization, deployment: &Value) -> Wxgate {
    let c = container(deployment, "wxgate");
    let spec = &deployment["spec"]["template"]["spec"];
    let volumes: HashMap<&str, &Value> = array_at(spec, "/volumes")
        .iter()
        .map(|v| (str_at(v, "/name"), v))
        .collect();

    // Mirror every mount in a temp dir: ConfigMap files with their text,
    // Secret items with stand-in values.
    let root = tempfile::tempdir().unwrap();
    let mut mounts = Vec::new();
    for mount in array_at(c, "/volumeMounts") {
        assert_eq!(mount["readOnly"], true, "{mount}");
        let at = str_at(mount, "/mountPath");
        let dir = root.path().join(at.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let volume = volumes[str_at(mount, "/name")];
        if let Some(name) = volume.pointer("/configMap/name").and_then(Value::as_str) {
            let files = k
                .config_maps
                .get(name)
                .unwrap_or_else(|| panic!("no generated ConfigMap {name}"));
            for (key, text) in files {
                std::fs::write(dir.join(key), text).unwrap();
            }
        } else {
            let name = str_at(volume, "/secret/secretName");
            let keys = k
                .secrets
                .get(name)
                .unwrap_or_else(|| panic!("no generated Secret {name}"));
            let items = array_at(volume, "/secret/items");
            assert!(!items.is_empty(), "{name}: mount named items");
            for item in items {
                let key = str_at(item, "/key");
                assert!(
                    keys.iter().any(|k| k == key),
                    "Secret {name} has no key {key}"
                );
                std::fs::write(dir.join(str_at(item, "/path")), stand_in(key)).unwrap();
            }
        }
        mounts.push(at.to_owned());
    }

    let args: Vec<&str> = array_at(c, "/args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let config_path = match args.iter().position(|a| *a == "--config") {
        Some(i) => args[i + 1].to_owned(),
        None => panic!("wxgate is started without --config: {args:?}"),
    };
    let mirrored = root.path().join(config_path.trim_start_matches('/'));
    let mut text = read(&mirrored);
    // Absolute paths into the mounts now point into the mirror; a path
    // outside every mount stays as it is, and loading then fails on it.
    for at in &mounts {
        let to = root.path().join(at.trim_start_matches('/'));
        text = text.replace(&format!("\"{at}/"), &format!("\"{}/", to.display()));
    }
    let env: HashMap<String, String> = array_at(c, "/env")
        .iter()
        .map(|e| {
            let value = match e.pointer("/valueFrom/secretKeyRef") {
                Some(from) => {
                    let (name, key) = (str_at(from, "/name"), str_at(from, "/key"));
                    let keys = k
                        .secrets
                        .get(name)
                        .unwrap_or_else(|| panic!("no generated Secret {name}"));
                    assert!(
                        keys.iter().any(|k| k == key),
                        "Secret {name} has no key {key}"
                    );
                    stand_in(key)
                }
                None => e
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or("from-k8s")
                    .to_owned(),
            };
            (str_at(e, "/name").to_owned(), value)
        })
        .collect();
    let config = Config::parse_with_env(&text, &mirrored, Some(env))
        .unwrap_or_else(|e| panic!("{} as mounted: {e}", k.dir.display()));

    let ports: HashMap<String, i64> = array_at(c, "/ports")
        .iter()
        .map(|p| (str_at(p, "/name").to_owned(), int_at(p, "/containerPort")))
        .collect();
    let admin = config
        .admin
        .as_ref()
        .expect("an admin listener for the probes");
    let expected = HashMap::from([
        ("http".to_owned(), i64::from(config.server.listen.port())),
        ("admin".to_owned(), i64::from(admin.listen.port())),
    ]);
    assert_eq!(
        ports, expected,
        "container ports vs listen/admin in the config"
    );
    assert!(
        config.server.listen.ip().is_unspecified(),
        "the pod IP must reach the listener"
    );
    assert!(
        admin.listen.ip().is_unspecified(),
        "the kubelet probes the pod IP"
    );

    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(str_at(get, "/path"), path, "{probe}");
        assert_eq!(
            resolve_port(&get["port"], &ports),
            expected["admin"],
            "{probe} port"
        );
    }

    let grace = Duration::from_secs(int_at(spec, "/terminationGracePeriodSeconds") as u64);
    let pre_stop = pre_stop(c);
    assert!(
        grace > pre_stop + config.server.shutdown_grace,
        "terminationGracePeriodSeconds {grace:?} <= preStop {pre_stop:?} + shutdown_grace {:?}",
        config.server.shutdown_grace
    );

    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let security = &c["securityContext"];
    assert_eq!(int_at(security, "/runAsUser"), IMAGE_UID);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);

    Wxgate {
        config,
        ports,
        config_path,
        pre_stop,
    }
}

/// The Service sends to wxgate's main port, and selects these pods.
fn check_service(k: &Kustomization, deployment: &Value, wx: &Wxgate) {
    let service = k.one("Service");
    assert_selects(&service["spec"]["selector"], deployment);
    let ports = array_at(service, "/spec/ports");
    assert!(!ports.is_empty());
    for port in ports {
        assert_eq!(
            resolve_port(&port["targetPort"], &wx.ports),
            i64::from(wx.config.server.listen.port()),
            "Service targetPort vs the main listener"
        );
    }
}

/// Every label of `selector` is on the pod template.
fn assert_selects(selector: &Value, deployment: &Value) {
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selector = selector.as_object().expect("a selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(&labels[key], value, "selector {key} vs pod labels {labels}");
    }
}

/// The pod admits its main port from anyone, and the admin port
/// (metrics) only from the monitoring namespace; nothing else.
fn check_network_policy(k: &Kustomization, deployment: &Value, wx: &Wxgate) {
    let policy = k.one("NetworkPolicy");
    assert_selects(&policy["spec"]["podSelector"]["matchLabels"], deployment);
    let types = array_at(policy, "/spec/policyTypes");
    assert!(types.iter().any(|t| t == "Ingress"), "{types:?}");
    let main = i64::from(wx.config.server.listen.port());
    let admin = i64::from(wx.config.admin.as_ref().unwrap().listen.port());
    let mut admitted = Vec::new();
    for rule in array_at(policy, "/spec/ingress") {
        let ports = array_at(rule, "/ports");
        assert!(!ports.is_empty(), "a rule without ports admits every port");
        let from = array_at(rule, "/from");
        for port in ports {
            let port = resolve_port(&port["port"], &wx.ports);
            assert!(
                port == main || port == admin,
                "port {port} is neither listen ({main}) nor admin ({admin})"
            );
            if port == admin {
                assert!(!from.is_empty(), "the admin port open to every pod");
                for peer in from {
                    assert_eq!(
                        peer,
                        &serde_json::json!({"namespaceSelector": {"matchLabels": {
                            "kubernetes.io/metadata.name": "monitoring"}}}),
                        "the admin port admits only the monitoring namespace"
                    );
                }
            }
            admitted.push(port);
        }
    }
    admitted.sort();
    admitted.dedup();
    assert_eq!(admitted, [main.min(admin), main.max(admin)]);
}

/// What a pod's memory limit must hold, from the measured costs
/// (examples/store_rss.rs, examples/idle_rss.rs; docs/operations.md):
/// every store kind full, every allowed connection open and idle, the
/// verified-token cache full, and the process itself.
fn check_memory_limit(deployment: &Value, wx: &Wxgate) {
    const BASE: u64 = 24 << 20;
    // 26 KiB measured on 2026-12-06, 35 KiB on 2026-11-23: the larger.
    const PER_CONNECTION: u64 = 35 << 10;
    const PER_CAPACITY: u64 = 462 + 342 + 874; // a session, a revocation, a code
    const TOKEN_CACHE: u64 = 50_000 * 924;
    let limit = str_at(container(deployment, "wxgate"), "/resources/limits/memory");
    let limit: u64 = limit
        .strip_suffix("Mi")
        .and_then(|m| m.parse().ok())
        .map(|m: u64| m << 20)
        .unwrap_or_else(|| panic!("a limit in Mi: {limit}"));
    let capacity = wx.config.store.capacity;
    let connections = wx.config.server.max_connections as u64;
    let needed = BASE + connections * PER_CONNECTION + capacity * PER_CAPACITY + TOKEN_CACHE;
    assert!(
        needed <= limit,
        "store.capacity {capacity} and max_connections {connections} need {} MiB, the limit is {} MiB",
        needed >> 20,
        limit >> 20
    );
}

#[test]
fn sidecar_pod_matches_its_gateway_toml() {
    let k = kustomization("sidecar");
    let deployment = k.one("Deployment");
    let wx = wxgate_in(&k, deployment);
    replicas_share_a_store(deployment, &wx);
    check_service(&k, deployment, &wx);
    check_network_policy(&k, deployment, &wx);
    check_memory_limit(deployment, &wx);

    // The application is reachable only through wxgate, on loopback.
    let app = container(deployment, "app");
    assert!(
        array_at(app, "/ports").is_empty(),
        "the app exposes no port"
    );
    for route in &wx.config.routes {
        let host = route.upstream.authority.host();
        assert!(
            host == "127.0.0.1" || host == "localhost" || host == "[::1]",
            "route {} goes to {host}, not the pod's loopback",
            route.path
        );
    }
    // The app outlives wxgate's drain, and the kubelet waits for both.
    let drained = wx.pre_stop + wx.config.server.shutdown_grace;
    assert!(pre_stop(app) >= drained, "app preStop vs wxgate's drain");
    let grace = int_at(
        deployment,
        "/spec/template/spec/terminationGracePeriodSeconds",
    );
    assert!(Duration::from_secs(grace as u64) > pre_stop(app));
}

#[test]
fn standalone_deployment_service_and_pdb_agree() {
    let k = kustomization("standalone");
    let deployment = k.one("Deployment");
    let wx = wxgate_in(&k, deployment);
    replicas_share_a_store(deployment, &wx);
    check_service(&k, deployment, &wx);
    check_network_policy(&k, deployment, &wx);
    check_memory_limit(deployment, &wx);

    let pdb = k.one("PodDisruptionBudget");
    assert_selects(&pdb["spec"]["selector"]["matchLabels"], deployment);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        pdb["spec"]["selector"]["matchLabels"]
    );
    // The autoscaler owns the replica count: a `replicas` in the
    // Deployment would reset it on every apply.
    assert!(deployment["spec"].get("replicas").is_none());
    let hpa = k.one("HorizontalPodAutoscaler");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(str_at(target, "/kind"), "Deployment");
    assert_eq!(
        str_at(target, "/name"),
        str_at(deployment, "/metadata/name")
    );
    let replicas = int_at(hpa, "/spec/minReplicas");
    assert!(int_at(hpa, "/spec/maxReplicas") >= replicas);
    let min_available = int_at(pdb, "/spec/minAvailable");
    assert!(
        min_available < replicas,
        "minAvailable {min_available} of {replicas} replicas blocks every drain"
    );
    // CPU utilization is measured against the request.
    let wxgate = container(deployment, "wxgate");
    assert!(wxgate.pointer("/resources/requests/cpu").is_some());

    // `kubectl apply -k` on a fresh cluster: the namespace it names is
    // one of its resources.
    let namespace = k.namespace.as_deref().expect("a namespace");
    let created = k.one("Namespace");
    assert_eq!(str_at(created, "/metadata/name"), namespace);
    assert!(
        !wx.config.server.trusted_proxies.is_empty(),
        "forward-auth needs the ingress in trusted_proxies"
    );
}

/// Every upstream the standalone config routes to is in a namespace where
/// only wxgate's pods are admitted.
#[test]
fn upstreams_admit_only_wxgate() {
    let standalone = kustomization("standalone");
    let deployment = standalone.one("Deployment");
    let wx = wxgate_in(&standalone, deployment);
    let k = kustomization("upstream-policy");
    let namespace = k.namespace.as_deref().expect("a namespace");
    for route in &wx.config.routes {
        // name.namespace.svc[.cluster.local]
        let host = route.upstream.authority.host();
        let labels: Vec<&str> = host.split('.').collect();
        assert!(
            labels.len() >= 3 && labels[2] == "svc",
            "{}: {host} is not a Service name",
            route.path
        );
        assert_eq!(labels[1], namespace, "{}: {host}", route.path);
    }
    let policy = k.one("NetworkPolicy");
    assert_eq!(
        policy["spec"]["podSelector"],
        serde_json::json!({}),
        "every pod of the upstream namespace"
    );
    assert!(array_at(policy, "/spec/policyTypes")
        .iter()
        .any(|t| t == "Ingress"));
    let rules = array_at(policy, "/spec/ingress");
    assert!(!rules.is_empty());
    for rule in rules {
        let from = array_at(rule, "/from");
        assert!(!from.is_empty(), "a rule without `from` admits every pod");
        for peer in from {
            assert_eq!(
                str_at(
                    peer,
                    "/namespaceSelector/matchLabels/kubernetes.io~1metadata.name"
                ),
                standalone.namespace.as_deref().unwrap(),
                "{peer}"
            );
            assert_selects(&peer["podSelector"]["matchLabels"], deployment);
        }
    }
}

/// The ServiceMonitor reaches the admin port of the standalone pods.
#[test]
fn servicemonitor_scrapes_the_admin_port() {
    let standalone = kustomization("standalone");
    let deployment = standalone.one("Deployment");
    let wx = wxgate_in(&standalone, deployment);
    let k = kustomization("monitoring");
    assert_eq!(k.namespace, standalone.namespace);
    let service = k.one("Service");
    assert_selects(&service["spec"]["selector"], deployment);
    assert_eq!(str_at(service, "/spec/clusterIP"), "None");
    let ports = array_at(service, "/spec/ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(
        resolve_port(&ports[0]["targetPort"], &wx.ports),
        i64::from(wx.config.admin.as_ref().unwrap().listen.port())
    );
    let monitor = k.one("ServiceMonitor");
    let wanted = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    assert!(!wanted.is_empty());
    for (key, value) in wanted {
        assert_eq!(&service["metadata"]["labels"][key], value, "{key}");
    }
    let endpoints = array_at(monitor, "/spec/endpoints");
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], ports[0]["name"]);
    assert_eq!(str_at(&endpoints[0], "/path"), "/metrics");
}

/// The image's listeners and config path are those the manifests use.
#[test]
fn dockerfile_builds_locked_runs_non_root_and_bakes_in_no_config() {
    let instructions = dockerfile(&repo().join("deploy/Dockerfile"));
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, i)| i.keyword == "FROM")
        .map(|(n, _)| n)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {stages:?}");
    let last = *stages.last().unwrap();
    let build_stage = instructions[stages[0]]
        .args
        .split_once(" AS ")
        .map(|(_, name)| name.trim().to_owned())
        .expect("the build stage is named");
    let final_image = &instructions[last].args;
    assert!(
        !final_image.contains("rust:"),
        "no toolchain in the final image: {final_image}"
    );

    let build = instructions
        .iter()
        .find(|i| i.keyword == "RUN" && i.args.contains("cargo build"))
        .expect("a cargo build");
    for flag in ["--release", "--locked"] {
        assert!(build.args.contains(flag), "cargo build without {flag}");
    }

    let final_stage = &instructions[last..];
    let user = final_stage
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .expect("a USER in the final stage");
    let uid = user.args.split(':').next().unwrap();
    assert_eq!(
        uid.parse::<i64>().ok(),
        Some(IMAGE_UID),
        "USER {}",
        user.args
    );

    for copy in instructions
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
    {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        if words[0] == format!("--from={build_stage}") {
            continue;
        }
        assert_eq!(
            copy.keyword, "COPY",
            "ADD fetches and unpacks: {}",
            copy.args
        );
        for source in &words[..words.len() - 1] {
            assert!(
                ["Cargo.toml", "Cargo.lock", "build.rs", "src"].contains(source),
                "COPY {source}: only the sources go in, never a config or secret"
            );
        }
    }

    let exposed: Vec<i64> = final_stage
        .iter()
        .filter(|i| i.keyword == "EXPOSE")
        .flat_map(|i| i.args.split_whitespace().map(|p| p.parse::<i64>().unwrap()))
        .collect();
    let config_env = final_stage
        .iter()
        .find_map(|i| {
            i.args
                .strip_prefix("WXGATE_CONFIG=")
                .filter(|_| i.keyword == "ENV")
        })
        .expect("ENV WXGATE_CONFIG");
    for name in ["sidecar", "standalone"] {
        let k = kustomization(name);
        let wx = wxgate_in(&k, k.one("Deployment"));
        let mut ports: Vec<i64> = wx.ports.values().copied().collect();
        ports.sort();
        assert_eq!(exposed, ports, "EXPOSE vs {name}'s ports");
        assert_eq!(config_env, wx.config_path, "WXGATE_CONFIG vs {name}");
    }
}

#[test]
fn dockerignore_lets_in_only_what_the_build_copies() {
    let text = read(&repo().join(".dockerignore"));
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        "an allow-list starts by excluding all"
    );
    let mut allowed: Vec<&str> = rules[1..]
        .iter()
        .map(|r| {
            r.strip_prefix('!')
                .expect("only re-inclusions follow")
                .trim_end_matches('/')
        })
        .collect();
    allowed.sort();
    assert_eq!(allowed, ["Cargo.lock", "Cargo.toml", "build.rs", "src"]);
}

/// The snippets name the verify path and identity headers the shipped
/// config uses.
#[test]
fn forward_auth_snippets_match_the_verify_path_and_identity_names() {
    let k = kustomization("standalone");
    let config = wxgate_in(&k, k.one("Deployment")).config;
    let verify = &config.auth.verify_path;
    let names: Vec<String> = [
        &config.identity.openid_header,
        &config.identity.appid_header,
        &config.identity.unionid_header,
    ]
    .iter()
    .map(|h| h.as_str().to_owned())
    .collect();
    let dir = repo().join("deploy/forward-auth");

    let traefik = yaml_docs(&dir.join("traefik.yaml")).pop().unwrap();
    let address = str_at(&traefik, "/spec/forwardAuth/address");
    assert!(address.ends_with(verify.as_str()), "{address} vs {verify}");
    assert_eq!(traefik["spec"]["forwardAuth"]["trustForwardHeader"], false);
    assert_eq!(
        lowercase(array_at(&traefik, "/spec/forwardAuth/authResponseHeaders")),
        names
    );

    let envoy = yaml_docs(&dir.join("envoy.yaml")).pop().unwrap();
    let filters = array_at(
        &envoy,
        "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config/http_filters",
    );
    let filter = |name: &str| {
        filters
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let ext_authz = &filter("envoy.filters.http.ext_authz")["typed_config"];
    assert_eq!(str_at(ext_authz, "/http_service/path_prefix"), verify);
    assert_eq!(ext_authz["failure_mode_allow"], false);
    let removed: Vec<Value> = array_at(
        &filter("envoy.filters.http.header_mutation")["typed_config"],
        "/mutations/request_mutations",
    )
    .iter()
    .map(|m| m["remove"].clone())
    .collect();
    assert_eq!(
        lowercase(&removed),
        names,
        "header_mutation removes the identity names"
    );

    let nginx = read(&dir.join("nginx.conf"));
    assert!(nginx.contains(&format!("proxy_pass http://wxgate{verify};")));
    assert!(nginx.contains(&format!("rewrite ^ {verify}? break;")));
    for name in &names {
        let var = name.replace('-', "_");
        assert!(
            nginx.contains(&format!("$upstream_http_{var};")),
            "{name} in nginx.conf"
        );
        assert!(
            nginx
                .to_ascii_lowercase()
                .contains(&format!("proxy_set_header {name} ")),
            "{name} in nginx.conf"
        );
    }
}

fn lowercase(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|v| v.as_str().expect("a header name").to_ascii_lowercase())
        .collect()
}

/// Not a test of deploy/ itself: the yaml reader must see what Kubernetes
/// sees, or the checks above check nothing.
#[test]
fn the_yaml_reader_reads_multi_document_files() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("two.yaml");
    std::fs::write(
        &path,
        "a: 1\nb: [x, \"y\"]\n---\n# only a comment\n---\nc: {d: true}\n",
    )
    .unwrap();
    let docs = yaml_docs(&path);
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0]["a"], 1);
    assert_eq!(docs[0]["b"][1], "y");
    assert_eq!(docs[1]["c"]["d"], true);
}

//! Counts the instructions that the metric updates of one proxied request
//! cost: the answered request's status counter and its two histograms,
//! through the handles a config resolves once, as `ops::access::Record`
//! calls them.
//!
//! Run it twice under callgrind, with N requests and with none; the
//! difference divided by N is the cost of one request's updates:
//!
//! ```sh
//! cargo build --release --example metrics_cost
//! for n in 0 100000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/metrics_cost $n 2>&1 | grep 'refs'
//! done
//! ```

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use wxgate::config::Config;
use wxgate::ops::metrics::{Metrics, Sampled};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[[apps]]
appid = "wxbench000000001"
secret = "unused"

[token]
[[token.keys]]
id = "k1"
secret = "metrics-cost-measurement-key-0123456789"

[[routes]]
path = "/api"
upstream = "http://127.0.0.1:9"
auth = "required"
"#;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(100_000, |n| n.parse().expect("a count"));
    let config = Config::parse(CONFIG, Path::new("metrics_cost.toml")).expect("the config");
    let metrics = Metrics::default();
    let handles = metrics.handles(&config);
    let route = &handles.routes[0];
    for i in 0..n {
        // Durations that land in different buckets, as real ones do.
        let total = Duration::from_micros(black_box(150 + (i % 7) * 400));
        let upstream = total / 2;
        route.record(black_box(200), total, Some(upstream));
    }
    // Something the optimiser cannot see through, and a check that the
    // updates happened.
    let text = metrics.encode(&Sampled::default());
    assert!(n == 0 || text.contains("route=\"/api\",status=\"200\""));
    println!("{n} requests recorded, {} bytes of metrics", text.len());
}

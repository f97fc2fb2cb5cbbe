//! Configuration files: every file in `tests/config/` states on its first
//! line the error it must produce (`# expect: ...`), or `ok`.

use std::path::Path;

use edge_node::NodeConfig;

#[test]
fn config_files_are_accepted_or_rejected_with_the_field_named() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect:` line", path.display()))
            .replace("{dir}", &dir.display().to_string());
        let actual = match NodeConfig::from_file(&path) {
            Ok(_) => "ok".to_string(),
            Err(err) => err.to_string(),
        };
        assert_eq!(actual, expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} config files checked");
}

/// The `node.toml` the Kubernetes manifests ship (`ops/kubernetes/node.yaml`,
/// the ConfigMap's block under `node.toml: |`) is a configuration the node
/// accepts.
#[test]
fn the_kubernetes_config_map_holds_a_valid_node_config() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/kubernetes/node.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "node.toml: |");
    let header = lines.next().expect("no `node.toml: |` block");
    let key_indent = header.len() - header.trim_start().len();
    let toml: String = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .map(|l| format!("{}\n", l.get(key_indent + 2..).unwrap_or("")))
        .collect();
    assert!(toml.contains("[control_plane]"), "{toml}");
    let config = NodeConfig::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.validate().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let cp = config.control_plane.expect("a control plane");
    assert!(
        cp.token.is_none() && cp.token_file.is_some(),
        "the token comes from a file"
    );
    assert!(
        config.listen.admin.is_some(),
        "probes need the admin listener"
    );
}

/// `[http] trusted_proxies` takes a bare address as that one address.
#[test]
fn a_trusted_proxy_may_be_a_bare_address() {
    let config = NodeConfig::from_toml(
        "[listen]\nhttp = \"127.0.0.1:8080\"\n[http]\n\
         trusted_proxies = [\"10.0.0.5\", \"2001:db8::7\", \"192.168.0.0/16\"]\n",
    )
    .unwrap();
    let nets: Vec<String> = config
        .http
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.5/32", "2001:db8::7/128", "192.168.0.0/16"]);
}

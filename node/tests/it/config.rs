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

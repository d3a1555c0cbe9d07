//! The `relay` binary end to end: flags, `-O`, exit codes, one-line errors.

use std::process::{Command, Output};

fn relay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unknown_flag_exits_2_with_one_line() {
    let o = relay(&["-x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "flag provided but not defined: -x\n");
    let o = relay(&["-L"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "flag needs an argument: -L\n");
}

#[test]
fn help_and_version() {
    for h in ["-h", "-help", "--help"] {
        let o = relay(&[h]);
        assert_eq!(o.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&o.stdout).starts_with("Usage: relay"));
    }
    let o = relay(&["-V"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("relay {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn print_yaml_and_json() {
    let o = relay(&["-L", "relay://user:pass@:8420?bind=true", "-O", "yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("services:\n- name: service-0\n"), "{out}");
    assert!(out.contains("type: relay"));
    let o = relay(&["-L=tcp://:2222/:22", "--F", "relay://:8420", "-O=json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["services"][0]["handler"]["chain"], "chain-0");
    assert_eq!(
        v["chains"][0]["hops"][0]["nodes"][0]["connector"]["type"],
        "relay"
    );
}

#[test]
fn config_files_and_inline_json() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let o = relay(&[
        "-C",
        &format!("{dir}/examples/local-forward-client.yaml"),
        "-O",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["services"][1]["listener"]["type"], "udp");
    let o = relay(&[
        "-C",
        r#"{"services":[{"name":"s","addr":":8420","handler":{"type":"relay"}}]}"#,
        "-O",
        "yaml",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = relay(&["-C", "/nonexistent/relay.yaml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("/nonexistent/relay.yaml: "));
    assert_eq!(stderr(&o).lines().count(), 1);
}

#[test]
fn bad_url_and_config_are_one_line() {
    for args in [
        &["-L", "relay://:8000-8010"][..],
        &["-L", "relay://:1?readTimeout=abc"],
        &["-L", ":1", "-F", "socks5://h:1"],
        &["-L", "ss://:1"],
    ] {
        let o = relay(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
    let o = relay(&["-L", ":1", "-F", "socks5://h:1"]);
    assert!(stderr(&o).contains("connector \"socks5\" is not supported"));
}

#[test]
fn nothing_to_run_is_an_error() {
    let o = relay(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "no services configured (use -L or -C)\n");
}

#[test]
fn print_works_for_configs_this_build_cannot_run() {
    let o = relay(&["-L", ":8080", "-F", "relay+mtls://host:8443", "-O", "yaml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("type: mtls"));
    assert!(stderr(&o).starts_with("warning: "));
    assert!(stderr(&o).contains("dialer \"mtls\" is not supported yet"));
}

//! Start-up failures: bad configuration, bad URLs and ports in use end the process with a
//! non-zero exit and a one-line error.

use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use relay_tests::*;

const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// Runs the relay and asserts a prompt non-zero exit whose stderr has exactly one line that
/// is not a log record, containing every `needles` entry (case-insensitive).
fn assert_fails(rt: Runtime, argv: &[&str], needles: &[&str]) -> String {
    let (status, stderr) = run_to_exit(rt, argv, EXIT_WITHIN);
    let status = status.unwrap_or_else(|| {
        panic!("relay {argv:?} still running after {EXIT_WITHIN:?}; stderr:\n{stderr}")
    });
    assert!(
        !status.success(),
        "relay {argv:?} exited successfully; stderr:\n{stderr}"
    );
    let lines = non_log_lines(&stderr);
    assert_eq!(
        lines.len(),
        1,
        "relay {argv:?}: expected a one-line error, got:\n{stderr}"
    );
    let lower = lines[0].to_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_lowercase()),
            "relay {argv:?}: error {:?} should mention {n:?}",
            lines[0]
        );
    }
    lines[0].to_string()
}

both_runtimes!(
    fn bad_yaml_config(rt: Runtime) {
        let path = temp_file(
            "bad.yaml",
            "services:\n- name: x\n  addr: [:8420\n  handler: {\n",
        );
        assert_fails(rt, &["-C", path.to_str().unwrap()], &["bad.yaml"]);
        let path = temp_file("wrongtype.yaml", "services:\n- name: x\n  addr: {a: 1}\n");
        assert_fails(rt, &["-C", path.to_str().unwrap()], &[]);
        assert_fails(
            rt,
            &["-C", "/nonexistent/relay-e2e.yaml"],
            &["relay-e2e.yaml"],
        );
        assert_fails(rt, &["-C", "{\"services\": [}"], &[]);
    }
);

both_runtimes!(
    fn bad_urls(rt: Runtime) {
        assert_fails(rt, &["-L", "relay://127.0.0.1:notaport"], &[]);
        assert_fails(rt, &["-L", "relay://127.0.0.1:99999"], &[]);
        assert_fails(rt, &["-L", "relay://[::1"], &[]);
        let p = free_port();
        assert_fails(
            rt,
            &[
                "-L",
                &format!("tcp://127.0.0.1:{p}/127.0.0.1:9"),
                "-F",
                "relay://127.0.0.1:bad",
            ],
            &[],
        );
        assert_fails(rt, &[], &[]);
        assert_fails(rt, &["-L"], &[]);
        assert_fails(rt, &["-bogus-flag"], &[]);
    }
);

both_runtimes!(
    fn tcp_port_in_use(rt: Runtime) {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert_fails(
            rt,
            &["-L", &format!("relay://127.0.0.1:{port}")],
            &["in use", &port.to_string()],
        );
        // The second service's port is taken: still a failure, not a half-running process.
        let free = free_port();
        assert_fails(
            rt,
            &[
                "-L",
                &format!("relay://127.0.0.1:{free}"),
                "-L",
                &format!("relay://127.0.0.1:{port}"),
            ],
            &["in use", &port.to_string()],
        );
    }
);

both_runtimes!(
    fn udp_port_in_use(rt: Runtime) {
        let held = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let relay = free_port();
        assert_fails(
            rt,
            &[
                "-L",
                &format!("udp://127.0.0.1:{port}/127.0.0.1:9"),
                "-F",
                &format!("relay://127.0.0.1:{relay}"),
            ],
            &["in use", &port.to_string()],
        );
    }
);

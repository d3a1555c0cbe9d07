//! config.md §4.1: the local-forwarding seed configurations (relay-bin/examples) with their
//! ports rewritten to free ones: TCP :2222 → :22 and UDP :1053 → :53 through the relay node
//! :8420.

use relay_tests::*;

both_runtimes!(
    fn seed_local_forward_tcp_and_udp(rt: Runtime) {
        let echo = TcpTarget::echo();
        let udp_echo = UdpEcho::start();
        let (_server, p) = spawn_relay(rt, &[Proto::Tcp], |p| {
            let yaml = rewrite_addrs(
                &example("local-forward-server.yaml"),
                &[(":8420", format!(":{}", p[0]))],
            );
            let path = temp_file("local-forward-server.yaml", &yaml);
            args(&["-C", path.to_str().unwrap()])
        });
        let p = p[0];
        let (_client, ports) = spawn_relay(rt, &[Proto::Tcp, Proto::Udp], |q| {
            let yaml = rewrite_addrs(
                &example("local-forward-client.yaml"),
                &[
                    (":2222", format!(":{}", q[0])),
                    (":22", format!(":{}", echo.port)),
                    (":1053", format!(":{}", q[1])),
                    (":53", format!(":{}", udp_echo.port)),
                    (":8420", format!(":{p}")),
                ],
            );
            let path = temp_file("local-forward-client.yaml", &yaml);
            args(&["-C", path.to_str().unwrap()])
        });
        // TCP, both ways, twice (two connections).
        echo_check(ports[0], 256 * 1024, 31);
        echo_check(ports[0], 1024, 32);
        // UDP, a DNS-sized query and its answer, from two peers.
        let a = udp_peer(ports[1]);
        let b = udp_peer(ports[1]);
        for i in 0..3 {
            let qa = pattern(40 + i, 100 + i as u64);
            let qb = pattern(60 + i, 200 + i as u64);
            assert_eq!(udp_roundtrip(&a, &qa), qa);
            assert_eq!(udp_roundtrip(&b, &qb), qb);
        }
    }
);

#[test]
fn rewrite_keeps_other_addresses() {
    let yaml = "a:\n  addr: :2222\n  b:\n    addr: :22\n";
    let out = rewrite_addrs(yaml, &[(":22", ":1".into()), (":2222", ":2".into())]);
    assert_eq!(out, "a:\n  addr: \":2\"\n  b:\n    addr: \":1\"\n");
}

//! The demo, run by `cargo xtask demo` once everything is built: one node of a lab answers ARP
//! for an address configured nowhere.

use std::time::Duration;

use anyhow::Context as _;
use herald_tests::{
    lab::{Lab, format_mac},
    probe,
    speaker::Speaker,
};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    println!("\n== lab: a bridge, node-a at 192.0.2.1 and a client at 192.0.2.100 (network namespaces)");
    let mut lab = Lab::new(&["node-a"])?;
    let node = lab.node("node-a").clone();
    let config = "node = \"node-a\"\n\n[[vip]]\naddress = \"192.0.2.200\"\n";
    println!("\n== node-a runs herald-speaker with this config:\n{config}");
    let speaker = Speaker::start(&mut lab, &node, config, &[])?;
    println!("node-a's MAC is {}; 192.0.2.200 is configured on no interface.", format_mac(node.mac));

    println!("\n== client: arping -c 3 192.0.2.200");
    let out = lab.client.output("arping", &["-c", "3", "-w", "4", "-I", "eth0", "192.0.2.200"])?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let macs = probe::parse_arping(&String::from_utf8_lossy(&out.stdout))?;
    anyhow::ensure!(!macs.is_empty() && macs.iter().all(|m| *m == node.mac), "node-a did not answer");

    println!("\n== node-a: herald-speaker status (read from the pinned BPF maps)");
    print!("{}", speaker.status()?);
    println!("\n== node-a: bpftool map dump pinned {}/HERALD_ARP", speaker.pin_dir.display());
    let dump = node.run(
        "bpftool",
        &["map", "dump", "pinned", speaker.pin_dir.join("HERALD_ARP").to_str().context("path")?],
    )?;
    print!("{dump}");

    println!("\n== SIGTERM: the speaker withdraws and detaches");
    let status = speaker.stop(&mut lab)?;
    let after = probe::arping_once(&lab.client, "192.0.2.200".parse()?, Duration::from_millis(500))?;
    println!("speaker exited ({status}); replies for 192.0.2.200 now: {}", after.len());
    Ok(())
}

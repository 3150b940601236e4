//! baresip as a softphone of the seeded tenants: its microphone a tone,
//! what it hears kept as WAV, keys pressed through its UDP console.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use super::audio::write_tone;
use super::sip::Phone;

/// A baresip configuration in `dir`: `phone`'s account through the node,
/// a tone of `freq` Hz as its microphone, what it decodes kept as WAV, and
/// a UDP console (for [`press`]) when asked.
pub fn softphone(dir: &Path, phone: &Phone, sip_port: u16, freq: f64, console: bool) -> PathBuf {
    configure(dir, "127.0.0.1", freq, console);
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:{user}@{domain}>;auth_pass={password};outbound=\"sip:127.0.0.1:{sip_port}\";regint=600\n",
            user = phone.user,
            domain = phone.domain,
            password = phone.password,
        ),
    )
    .expect("baresip account");
    dir.to_path_buf()
}

/// A baresip in `dir` that calls like a carrier: from `ip` (a carrier
/// trunk's address), as `caller`, without registering or authenticating,
/// through the node at `sip_port`; keys through its UDP console.
pub fn carrier_softphone(dir: &Path, ip: &str, caller: &str, sip_port: u16, freq: f64) -> PathBuf {
    configure(dir, ip, freq, true);
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{caller}@{ip}>;outbound=\"sip:127.0.0.1:{sip_port}\";regint=0\n"),
    )
    .expect("baresip account");
    dir.to_path_buf()
}

/// baresip's configuration in `dir`: SIP on `ip` (its media on 127.0.0.1
/// whatever `ip` is: baresip sends it from there), a tone of `freq` Hz as
/// its microphone, what it decodes kept as WAV, and a UDP console
/// when asked.
fn configure(dir: &Path, ip: &str, freq: f64, console: bool) {
    std::fs::create_dir_all(dir).expect("phone dir");
    let console = console.then(|| {
        let port = super::free_port();
        std::fs::write(dir.join("console-port"), port.to_string()).expect("port");
        port
    });
    let tone = dir.join("tone.wav");
    write_tone(&tone, freq, 60);
    let port = super::free_port();
    let console = console
        .map(|c| format!("module cons.so\ncons_listen 127.0.0.1:{c}\n"))
        .unwrap_or_default();
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen {ip}:{port}\nnet_interface 127.0.0.1\nmodule_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule sndfile.so\n{console}module_app account.so\n\
             module_app menu.so\nsnd_path {dir}\naudio_source aufile,{tone}\naudio_alert aufile,{tone}\n\
             rtp_ports 40000-40999\n",
            dir = dir.display(),
            tone = tone.display(),
        ),
    )
    .expect("baresip config");
}

/// Presses `key` on the baresip in `dir` (its UDP console).
pub fn press(dir: &Path, key: char) {
    console(dir, &key.to_string());
}

/// Sends `text` to the UDP console of the softphone in `dir`.
fn console(dir: &Path, text: &str) {
    let port: u16 = std::fs::read_to_string(dir.join("console-port"))
        .expect("console port")
        .trim()
        .parse()
        .expect("port");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("socket");
    socket
        .send_to(text.as_bytes(), ("127.0.0.1", port))
        .expect("console");
}

/// The recording of what baresip decoded (its sndfile dump).
pub fn heard(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| dir.join("nothing-decoded.wav"))
}

/// Sends a command line (`/hold`) to the softphone in `dir` (its UDP console).
pub fn command(dir: &Path, line: &str) {
    console(dir, &format!("{line}\n"));
}

/// Waits until baresip in `dir` says its call is up.
pub fn established(dir: &Path, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        if log.contains("Call established") {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

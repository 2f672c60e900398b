//! Three etcd members on loopback, for fault runs: kill (SIGKILL) and restart a
//! member, pause (SIGSTOP) and resume it, find the leader. Stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{etcd_bin, free_port, Request, Scratch};

pub struct EtcdCluster {
    pub members: Vec<Member>,
    scratch: Scratch,
    initial: String,
}

pub struct Member {
    pub client: u16,
    peer: u16,
    name: String,
    child: Option<Child>,
}

impl EtcdCluster {
    pub fn start(name: &str) -> EtcdCluster {
        let members: Vec<Member> = (1..=3)
            .map(|i| Member {
                client: free_port(),
                peer: free_port(),
                name: format!("m{i}"),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            scratch: Scratch::new(&format!("etcd-cluster-{name}")),
            initial,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        for i in 0..3 {
            cluster.wait_ready(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &self.members[i];
        let client = format!("http://127.0.0.1:{}", member.client);
        let peer = format!("http://127.0.0.1:{}", member.peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.0.join(format!("{}.log", member.name)))
            .unwrap();
        let child = Command::new(etcd_bin())
            .args(["--name", &member.name, "--data-dir"])
            .arg(self.scratch.0.join(&member.name))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .args([
                "--initial-cluster-token",
                "soak",
                "--heartbeat-interval",
                "100",
                "--election-timeout",
                "1000",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[i].child = Some(child);
    }

    fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = Request::new("POST", "/v3/kv/range")
                .body(r#"{"key":"AA=="}"#)
                .try_send(self.members[i].client)
            {
                if response.status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("etcd member {i} did not become ready");
    }

    /// The index of the member that leads, if one answers that it does.
    pub fn leader(&self) -> Option<usize> {
        for (i, member) in self.members.iter().enumerate() {
            if member.child.is_none() {
                continue;
            }
            let Ok(status) = Request::new("POST", "/v3/maintenance/status")
                .body("{}")
                .try_send(member.client)
            else {
                continue;
            };
            if status.status != 200 {
                continue;
            }
            let status = status.json();
            if status["leader"].is_string() && status["leader"] == status["header"]["member_id"] {
                return Some(i);
            }
        }
        None
    }

    /// Hands the leadership to member `i` (etcd's transfer-leadership, sent to
    /// the leader) and waits until it leads.
    pub fn make_leader(&self, i: usize) {
        let Some(leader) = self.leader() else {
            panic!("no leader")
        };
        if leader == i {
            return;
        }
        let status = Request::new("POST", "/v3/maintenance/status")
            .body("{}")
            .send(self.members[i].client)
            .json();
        let target = status["header"]["member_id"].as_str().unwrap().to_string();
        let answer = Request::new("POST", "/v3/maintenance/transfer-leadership")
            .body(&format!(r#"{{"targetID":"{target}"}}"#))
            .send(self.members[leader].client);
        assert_eq!(answer.status, 200, "{}", answer.body);
        super::wait_until("the new leader", Duration::from_secs(10), || self.leader() == Some(i));
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }

    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.members[i].child {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.signal(i, "-CONT");
            self.kill(i);
        }
    }
}

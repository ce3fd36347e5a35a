//! The responder programs, run by the kernel on frames a test hands them (BPF_PROG_TEST_RUN):
//! the XDP one and the TC one, both from the speaker's own object, with maps a test fills.
//!
//! The kernel runs them as if the frame came in on `lo` (ifindex 1), so map entries are for
//! ifindex 1. The frames carry their tags: a test run cannot put a tag beside a frame (that is
//! for the lab, `lab_vlan.rs`).

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, RingBuf},
    programs::{ProgramError, SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
};
use herald_speaker::{
    clock::monotonic_ns,
    datapath::{LOGGING, QUIET},
};
use speaker_common::{
    ARP_MAP, AddressEntry, ArpKey, CONFLICT_MAP, ELSEWHERE_MAP, HEARTBEAT_MAP, Heartbeat, LOG_LEVEL_GLOBAL,
    MacKey, NDP_MAP, NdpKey, PASS_PROGRAM, PEER_MAP, TC_PROGRAM, XDP_PROGRAM,
};

/// Where the kernel runs test frames in.
pub const LO: u32 = 1;
/// The dead-man bound the programs are loaded with.
pub const BOUND_NS: u64 = 2_000_000_000;

/// One of the responder programs, or the trivial one beside them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Tc,
    /// `herald_pass`: passes everything (the baseline of the benches).
    Pass,
}

impl Hook {
    /// The responders.
    pub const ALL: [Hook; 2] = [Hook::Xdp, Hook::Tc];

    pub fn program(self) -> &'static str {
        match self {
            Hook::Xdp => XDP_PROGRAM,
            Hook::Tc => TC_PROGRAM,
            Hook::Pass => PASS_PROGRAM,
        }
    }
}

/// What a program did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent back out: XDP_TX, or TC_ACT_REDIRECT to the interface it came in on.
    Answer,
    /// Passed on: XDP_PASS, or TC_ACT_UNSPEC (on to the next program or the stack).
    Pass,
    /// Dropped: XDP_DROP, or TC_ACT_SHOT.
    Drop,
    /// Not run: for a TC run the kernel builds a socket buffer, and refuses a frame whose
    /// EtherType says IPv4 or IPv6 but whose header is cut short. On a real interface such a
    /// frame reaches the program, which passes every frame that is not ARP.
    Refused,
    Other(u32),
}

impl Verdict {
    fn of(hook: Hook, code: u32) -> Self {
        match (hook, code) {
            (Hook::Xdp, 3) | (Hook::Tc, 7) => Verdict::Answer,
            (Hook::Xdp, 1) | (Hook::Tc, 2) => Verdict::Drop,
            (Hook::Xdp | Hook::Pass, 2) | (Hook::Tc, u32::MAX) => Verdict::Pass,
            (_, other) => Verdict::Other(other),
        }
    }
}

/// Both programs loaded, with maps a test fills and a fresh heartbeat.
pub struct Fixture {
    ebpf: Ebpf,
    /// Addresses in the elsewhere map, as the heartbeat tells the programs.
    elsewhere: u32,
}

impl Fixture {
    /// Loaded as with `--xdp-log off`: the object without log statements.
    pub fn new() -> Self {
        Self::with_log_level(0)
    }

    /// Loaded as the speaker loads it for aya-log's level `level` (0: off, the object without
    /// log statements ... 4: debug).
    pub fn with_log_level(level: u8) -> Self {
        let mut loader = EbpfLoader::new();
        if level > 0 {
            loader.override_global(LOG_LEVEL_GLOBAL, &level, true);
        }
        let object = if level > 0 { LOGGING.main } else { QUIET.main };
        let mut ebpf = loader.load(object).expect("the object loads");
        for name in [XDP_PROGRAM, PASS_PROGRAM] {
            let xdp: &mut Xdp = ebpf.program_mut(name).unwrap().try_into().unwrap();
            xdp.load().expect("the XDP program verifies");
        }
        let tc: &mut SchedClassifier = ebpf.program_mut(TC_PROGRAM).unwrap().try_into().unwrap();
        tc.load().expect("the TC program verifies");
        let mut f = Self { ebpf, elsewhere: 0 };
        f.beat(monotonic_ns());
        f
    }

    /// Answers for `key` with `mac`.
    pub fn insert(&mut self, key: ArpKey, mac: [u8; 6]) {
        let mut map: HashMap<_, ArpKey, AddressEntry> =
            HashMap::try_from(self.ebpf.map_mut(ARP_MAP).unwrap()).unwrap();
        map.insert(&key, &AddressEntry::new(mac), 0).unwrap();
    }

    /// Answers Neighbor Solicitations for `key` with `mac`.
    pub fn insert_ndp(&mut self, key: NdpKey, mac: [u8; 6]) {
        let mut map: HashMap<_, NdpKey, AddressEntry> =
            HashMap::try_from(self.ebpf.map_mut(NDP_MAP).unwrap()).unwrap();
        map.insert(&key, &AddressEntry::new(mac), 0).unwrap();
    }

    pub fn ndp_entry(&self, key: NdpKey) -> AddressEntry {
        let map: HashMap<_, NdpKey, AddressEntry> =
            HashMap::try_from(self.ebpf.map(NDP_MAP).unwrap()).unwrap();
        map.get(&key, 0).unwrap()
    }

    /// Another node announces `addr`: requests for it are dropped.
    pub fn insert_elsewhere(&mut self, addr: std::net::Ipv4Addr) {
        let mut map: HashMap<_, u32, u64> =
            HashMap::try_from(self.ebpf.map_mut(ELSEWHERE_MAP).unwrap()).unwrap();
        map.insert(&u32::from_ne_bytes(addr.octets()), &0, 0).unwrap();
        self.elsewhere += 1;
        let beat = self.heartbeat();
        self.beat(beat.monotonic_ns);
    }

    fn heartbeat(&self) -> Heartbeat {
        let map: Array<_, Heartbeat> = Array::try_from(self.ebpf.map(HEARTBEAT_MAP).unwrap()).unwrap();
        map.get(&0, 0).unwrap()
    }

    /// How many requests for `addr` were dropped.
    pub fn dropped(&self, addr: std::net::Ipv4Addr) -> u64 {
        let map: HashMap<_, u32, u64> = HashMap::try_from(self.ebpf.map(ELSEWHERE_MAP).unwrap()).unwrap();
        map.get(&u32::from_ne_bytes(addr.octets()), 0).unwrap()
    }

    /// Another Herald speaker's MAC.
    pub fn add_peer(&mut self, mac: [u8; 6]) {
        let mut map: HashMap<_, MacKey, u32> =
            HashMap::try_from(self.ebpf.map_mut(PEER_MAP).unwrap()).unwrap();
        map.insert(&MacKey::new(mac), &1, 0).unwrap();
    }

    /// A fresh beat. A long run of frames calls it now and then: in an emulated VM it outlasts
    /// the bound, and the programs rightly stop answering.
    pub fn beat_now(&mut self) {
        self.beat(monotonic_ns());
    }

    pub fn beat(&mut self, monotonic_ns: u64) {
        let mut map: Array<_, Heartbeat> =
            Array::try_from(self.ebpf.map_mut(HEARTBEAT_MAP).unwrap()).unwrap();
        map.set(0, &Heartbeat { monotonic_ns, dead_man_ns: BOUND_NS, pid: 0, elsewhere: self.elsewhere }, 0)
            .unwrap();
    }

    pub fn entry(&self, key: ArpKey) -> AddressEntry {
        let map: HashMap<_, ArpKey, AddressEntry> =
            HashMap::try_from(self.ebpf.map(ARP_MAP).unwrap()).unwrap();
        map.get(&key, 0).unwrap()
    }

    /// The conflicts counted on any entry.
    pub fn conflicts_total(&self) -> u64 {
        let map: Array<_, u64> = Array::try_from(self.ebpf.map(CONFLICT_MAP).unwrap()).unwrap();
        map.get(&0, 0).unwrap()
    }

    /// The bytes of `hook`'s program as the verifier left it (dead code removed).
    pub fn translated_len(&self, hook: Hook) -> u32 {
        let program = self.ebpf.program(hook.program()).unwrap();
        program.info().unwrap().size_translated().unwrap_or(0)
    }

    /// Runs `hook`'s program `repeat` times on `frame` (which an answer rewrites, so repeat
    /// only paths that pass); the kernel's result, with its mean time per run.
    pub fn time(&self, hook: Hook, frame: &[u8], repeat: u32) -> Result<TestRunResult, ProgramError> {
        let ctx = tc_context();
        let options = TestRunOptions {
            data_in: Some(frame),
            ctx_in: (hook == Hook::Tc).then_some(&ctx[..]),
            repeat,
            ..Default::default()
        };
        self.test_run(hook, options)
    }

    /// Empties the log ring buffer (statements the programs made; nobody else reads it here).
    pub fn drain_logs(&mut self) -> usize {
        let Some(map) = self.ebpf.map_mut("AYA_LOGS") else { return 0 };
        let Ok(mut ring) = RingBuf::try_from(map) else { return 0 };
        let mut n = 0;
        while ring.next().is_some() {
            n += 1;
        }
        n
    }

    fn test_run(&self, hook: Hook, options: TestRunOptions<'_>) -> Result<TestRunResult, ProgramError> {
        match hook {
            Hook::Xdp | Hook::Pass => {
                let p: &Xdp = self.ebpf.program(hook.program()).unwrap().try_into().unwrap();
                p.test_run(options)
            }
            Hook::Tc => {
                let p: &SchedClassifier = self.ebpf.program(TC_PROGRAM).unwrap().try_into().unwrap();
                p.test_run(options)
            }
        }
    }

    /// The verdict and the frame as `hook`'s program left it.
    pub fn run(&self, hook: Hook, frame: &[u8]) -> Result<(Verdict, Vec<u8>), ProgramError> {
        let mut out = vec![0u8; frame.len() + 64];
        let ctx = tc_context();
        let options = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: (hook == Hook::Tc).then_some(&ctx[..]),
            ..Default::default()
        };
        let result = match hook {
            Hook::Xdp | Hook::Pass => self.test_run(hook, options)?,
            Hook::Tc => {
                let p: &SchedClassifier = self.ebpf.program(TC_PROGRAM).unwrap().try_into().unwrap();
                match p.test_run(options) {
                    Err(ProgramError::SyscallError(e))
                        if e.io_error.raw_os_error() == Some(22)
                            && matches!(frame.get(12..14), Some([0x08, 0x00] | [0x86, 0xdd])) =>
                    {
                        return Ok((Verdict::Refused, frame.to_vec()));
                    }
                    result => result?,
                }
            }
        };
        out.truncate(result.data_size_out as usize);
        Ok((Verdict::of(hook, result.return_value), out))
    }

    pub fn assert_pass(&self, hook: Hook, name: &str, frame: &[u8]) {
        let (verdict, out) = self.run(hook, frame).unwrap_or_else(|e| panic!("{hook:?} {name}: {e:?}"));
        assert!(matches!(verdict, Verdict::Pass | Verdict::Refused), "{hook:?} {name}: verdict {verdict:?}");
        assert_eq!(out, frame, "{hook:?} {name}: a passed frame must be unchanged");
    }

    pub fn assert_drop(&self, hook: Hook, name: &str, frame: &[u8]) {
        let (verdict, _) = self.run(hook, frame).unwrap_or_else(|e| panic!("{hook:?} {name}: {e:?}"));
        assert_eq!(verdict, Verdict::Drop, "{hook:?} {name}: verdict");
    }

    pub fn assert_answer(&self, hook: Hook, name: &str, frame: &[u8], reply: &[u8]) {
        let (verdict, out) = self.run(hook, frame).unwrap_or_else(|e| panic!("{hook:?} {name}: {e:?}"));
        assert_eq!(verdict, Verdict::Answer, "{hook:?} {name}: verdict");
        assert_eq!(out, reply, "{hook:?} {name}: reply bytes");
    }
}

/// An `__sk_buff` for a TC run: ingress_ifindex (offset 36) and ifindex (40) `lo`, as an XDP
/// run gets them.
fn tc_context() -> [u8; 192] {
    let mut ctx = [0u8; 192];
    ctx[36..40].copy_from_slice(&LO.to_ne_bytes());
    ctx[40..44].copy_from_slice(&LO.to_ne_bytes());
    ctx
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

//! The memory planner on the sample models: no overlap, arena ≤ sum of tensors, the reported arena is what
//! `run` uses, and `run_into` allocates nothing.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tern::{Model, Session, SessionOptions};
use tern_tests::model;

struct Counting;
static COUNT: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
}
#[global_allocator]
static A: Counting = Counting;
/// The allocation counter sees every thread, so the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn models() -> Vec<(String, Vec<u8>)> {
    let s = |v: &str| v.parse().unwrap();
    vec![
        (
            "digits".into(),
            tern_tools::compress_float(&model("digits/digits.onnx"), &[]).unwrap(),
        ),
        (
            "cls".into(),
            tern_tools::compress_float(
                &model("cache/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
                &[s("x=1x3x48x192")],
            )
            .unwrap(),
        ),
        (
            "det".into(),
            tern_tools::compress_float(
                &model("cache/ch_PP-OCRv4_det_infer.onnx"),
                &[s("x=1x3x320x320")],
            )
            .unwrap(),
        ),
    ]
}

#[test]
fn plans_are_sound_tight_and_used() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, bytes) in models() {
        let m = Model::from_bytes(&bytes).unwrap();
        // the loader already ran plan::check; check it again explicitly and bound the arena
        tern::plan::check(&m.graph, &m.plan).unwrap();
        let sum: u64 = m
            .graph
            .tensors
            .iter()
            .filter(|t| !t.is_const())
            .map(|t| (t.byte_len() as u64).div_ceil(64) * 64)
            .sum();
        assert!(
            m.plan.arena_bytes <= sum,
            "{name}: arena {} > sum of tensors {sum}",
            m.plan.arena_bytes
        );
        assert!(m.plan.arena_bytes > 0);
        println!(
            "{name}: arena {} B, sum of activations {sum} B ({:.1}%)",
            m.plan.arena_bytes,
            100.0 * m.plan.arena_bytes as f64 / sum as f64
        );
        // a caller arena of exactly the reported size runs; one byte less is refused
        let need = Session::arena_bytes_needed(&m);
        let mut short = vec![0u8; need - 1];
        assert!(Session::with_arena(&m, SessionOptions::default(), &mut short).is_err());
        let mut arena = vec![0u8; need];
        let ins: Vec<Vec<f32>> = m.inputs().map(|t| vec![0.25; t.numel()]).collect();
        let ins: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
        let mut o1: Vec<Vec<f32>> = m.outputs().map(|t| vec![0.0; t.numel()]).collect();
        let mut o2 = o1.clone();
        {
            let mut s = Session::with_arena(&m, SessionOptions::default(), &mut arena).unwrap();
            let mut o: Vec<&mut [f32]> = o1.iter_mut().map(|v| v.as_mut_slice()).collect();
            s.run_into(&ins, &mut o).unwrap();
        }
        let mut s = Session::new(&m, SessionOptions::default()).unwrap();
        let mut o: Vec<&mut [f32]> = o2.iter_mut().map(|v| v.as_mut_slice()).collect();
        s.run_into(&ins, &mut o).unwrap();
        assert_eq!(o1, o2, "{name}: caller arena and owned arena differ");
    }
}

#[test]
fn run_into_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (name, bytes) in models() {
        let m = Model::from_bytes(&bytes).unwrap();
        for threads in [1, 2] {
            let mut s = Session::new(&m, SessionOptions { threads }).unwrap();
            let ins: Vec<Vec<f32>> = m.inputs().map(|t| vec![0.5; t.numel()]).collect();
            let ins: Vec<&[f32]> = ins.iter().map(|v| v.as_slice()).collect();
            let mut outs: Vec<Vec<f32>> = m.outputs().map(|t| vec![0.0; t.numel()]).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            s.run_into(&ins, &mut o).unwrap(); // warm
            COUNT.store(0, Ordering::SeqCst);
            ARMED.store(true, Ordering::SeqCst);
            let r = s.run_into(&ins, &mut o);
            ARMED.store(false, Ordering::SeqCst);
            r.unwrap();
            assert_eq!(
                COUNT.load(Ordering::SeqCst),
                0,
                "{name} with {threads} thread(s) allocated during run_into"
            );
        }
    }
}

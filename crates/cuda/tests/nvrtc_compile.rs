//! Every kernel in kernels/cuda/ compiles with NVRTC for sm_80, sm_89 and sm_90, and
//! ptxas's resource report fits the launch configuration the backend uses
//! (`joulebench_cuda::kernels`): no local-memory spills, registers x threads within the
//! register file and within the kernel's `__launch_bounds__`, static + dynamic shared
//! memory within the architecture's per-block limit. Needs NVRTC, the CUDA headers and
//! ptxas (`source scripts/test-env.sh`), not a GPU. Under CI=true a missing tool fails.

use joulebench_cuda::kernels::{
    max_smem_per_block_bytes, KernelFile, FILES, MAX_REGISTERS_PER_THREAD, REGISTERS_PER_SM,
};
use joulebench_cuda::nvrtc::{self, Arch, Target};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const ARCHS: [(u32, u32); 3] = [(8, 0), (8, 9), (9, 0)];

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Under CI a missing prerequisite fails the test; elsewhere it is skipped, saying why.
fn skip(why: &str) {
    if in_ci() {
        panic!("required under CI=true: {why}");
    }
    eprintln!("skipped: {why}");
}

fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("JOULEBENCH_PTXAS") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/bin"));
    dirs.into_iter()
        .map(|d| d.join("ptxas"))
        .find(|p| p.is_file())
}

#[derive(Debug, Default, Clone)]
struct Resources {
    registers: u32,
    static_smem_bytes: u32,
    spill_store_bytes: u32,
    spill_load_bytes: u32,
    stack_frame_bytes: u32,
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let i = line.find(unit)?;
    line[..i].split_whitespace().last()?.parse().ok()
}

/// Per-entry resources from `ptxas -v` (its report goes to stderr).
fn parse_ptxas(report: &str) -> BTreeMap<String, Resources> {
    let mut out: BTreeMap<String, Resources> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in report.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            current = rest.split('\'').next().map(str::to_string);
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            current = Some(rest.trim().to_string());
        }
        let Some(name) = current.clone() else {
            continue;
        };
        let r = out.entry(name).or_default();
        if line.contains("spill stores") {
            r.stack_frame_bytes = number_before(line, "bytes stack frame").unwrap_or(0);
            r.spill_store_bytes = number_before(line, "bytes spill stores").unwrap_or(0);
            r.spill_load_bytes = number_before(line, "bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used") && line.contains("registers") {
            r.registers = number_before(line, "registers").unwrap_or(0);
            r.static_smem_bytes = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

/// `.maxntid` and `.minnctapersm` of one entry in the PTX: the kernel's __launch_bounds__.
fn launch_bounds(ptx: &str, kernel: &str) -> (Option<u32>, Option<u32>) {
    let Some(start) = ptx.find(&format!(".entry {kernel}(")) else {
        return (None, None);
    };
    let body = &ptx[start..];
    let header = &body[..body.find('{').unwrap_or(body.len())];
    let field = |directive: &str| {
        header
            .split(directive)
            .nth(1)
            .and_then(|r| r.split([',', '\n']).next())
            .and_then(|v| v.trim().parse().ok())
    };
    (field(".maxntid"), field(".minnctapersm"))
}

#[test]
fn every_kernel_file_is_listed() {
    // The source tree of the build; a test binary carried to another machine has none.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../kernels/cuda");
    if !dir.is_dir() {
        return skip(&format!(
            "{} not found (binary run outside its source tree)",
            dir.display()
        ));
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("kernels/cuda is readable")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cu"))
        .map(|n| n.trim_end_matches(".cu").to_string())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| f.name.to_string()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "kernels/cuda/*.cu and kernels::FILES differ"
    );
    for f in FILES {
        let text = std::fs::read_to_string(dir.join(format!("{}.cu", f.name))).unwrap();
        assert_eq!(
            text, f.source,
            "{}.cu differs from the embedded copy",
            f.name
        );
        for k in f.kernels {
            assert!(
                text.contains(&format!("({}, ", k.kernel)),
                "{} is not instantiated in {}.cu",
                k.kernel,
                f.name
            );
        }
    }
}

fn check_file(
    file: &KernelFile,
    arch: (u32, u32),
    ptxas: &PathBuf,
    table: &mut Vec<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let a = Arch::new(arch.0, arch.1);
    let compiled = match nvrtc::compile_fresh(file, a, Target::Ptx) {
        Ok(c) => c,
        Err(e) => return vec![format!("{}: {e}", file.name)],
    };
    let ptx = compiled.ptx().unwrap_or_default().to_string();
    // one directory per (file, arch): the pairs compile in parallel
    let dir = std::env::temp_dir().join(format!(
        "jb-nvrtc-compile-{}-{}-{}",
        std::process::id(),
        file.name,
        a.number()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ptx_path = dir.join(format!("{}_{}.ptx", file.name, a.number()));
    std::fs::write(&ptx_path, &ptx).unwrap();
    let out = Command::new(ptxas)
        .arg(format!("-arch=sm_{}", a.number()))
        .arg("-v")
        .arg(&ptx_path)
        .arg("-o")
        .arg(dir.join(format!("{}_{}.cubin", file.name, a.number())))
        .output()
        .expect("ptxas runs");
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return vec![format!(
            "ptxas failed on {} for sm_{}:\n{report}",
            file.name,
            a.number()
        )];
    }
    let resources = parse_ptxas(&report);
    let smem_limit = max_smem_per_block_bytes(arch);
    for spec in file.kernels {
        let Some(r) = resources.get(spec.kernel) else {
            problems.push(format!(
                "{}: no ptxas report for sm_{}",
                spec.kernel,
                a.number()
            ));
            continue;
        };
        let (max_threads, min_blocks) = launch_bounds(&ptx, spec.kernel);
        let smem_total = r.static_smem_bytes + spec.dynamic_smem_bytes;
        table.push(format!(
            "| {} | sm_{} | {} | {} | {} | {} | {} / {} |",
            spec.kernel,
            a.number(),
            spec.threads_per_block,
            r.registers,
            r.static_smem_bytes,
            spec.dynamic_smem_bytes,
            r.spill_store_bytes,
            r.spill_load_bytes
        ));
        let name = format!("{} on sm_{}", spec.kernel, a.number());
        if r.spill_store_bytes > 0 || r.spill_load_bytes > 0 {
            problems.push(format!(
                "{name}: spills to local memory ({} bytes stores, {} bytes loads)",
                r.spill_store_bytes, r.spill_load_bytes
            ));
        }
        if r.registers == 0 || r.registers > MAX_REGISTERS_PER_THREAD {
            problems.push(format!("{name}: {} registers per thread", r.registers));
        }
        if r.registers * spec.threads_per_block > REGISTERS_PER_SM {
            problems.push(format!(
                "{name}: {} registers x {} threads exceed the {REGISTERS_PER_SM}-register file",
                r.registers, spec.threads_per_block
            ));
        }
        match max_threads {
            Some(t) if t == spec.threads_per_block => {}
            other => problems.push(format!(
                "{name}: __launch_bounds__ allows {other:?} threads, the host launches {}",
                spec.threads_per_block
            )),
        }
        if let Some(blocks) = min_blocks {
            if r.registers * spec.threads_per_block * blocks > REGISTERS_PER_SM {
                problems.push(format!(
                    "{name}: {blocks} blocks of {} threads at {} registers do not fit one SM",
                    spec.threads_per_block, r.registers
                ));
            }
        }
        if smem_total > smem_limit {
            problems.push(format!(
                "{name}: {smem_total} bytes of shared memory (static {} + dynamic {}) exceed the {smem_limit}-byte per-block limit",
                r.static_smem_bytes, spec.dynamic_smem_bytes
            ));
        }
        if r.static_smem_bytes > 48 * 1024 {
            problems.push(format!(
                "{name}: static shared memory above 48 KiB cannot launch"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    problems
}

#[test]
fn kernels_compile_and_fit_their_launch_configs() {
    if let Err(why) = nvrtc::supported_archs() {
        return skip(&why);
    }
    let Some(ptxas) = ptxas() else {
        return skip("ptxas not found (set JOULEBENCH_PTXAS, or put ptxas on PATH)");
    };
    if nvrtc::include_dir().is_none() {
        return skip(
            "CUDA headers not found (set JOULEBENCH_CUDA_INCLUDE to a directory with cuda_fp16.h)",
        );
    }
    let mut problems = Vec::new();
    let mut table = vec![
        "| kernel | arch | threads | registers | static smem B | dynamic smem B | spill stores / loads B |".to_string(),
        "|---|---|---|---|---|---|---|".to_string(),
    ];
    // NVRTC and ptxas are single-threaded: compile the (file, arch) pairs on every core
    let jobs: Vec<(&KernelFile, (u32, u32))> = FILES
        .iter()
        .flat_map(|file| {
            ARCHS
                .iter()
                .filter(|&&arch| arch >= file.min_compute_capability)
                .map(move |&arch| (file, arch))
        })
        .collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Vec<String>, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(jobs.len()))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(file, arch)) = jobs.get(i) else {
                            return done;
                        };
                        let mut rows = Vec::new();
                        let found = check_file(file, arch, &ptxas, &mut rows);
                        done.push((i, found, rows));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a compile thread panicked"))
            .collect()
    });
    // the table and the problems in file and arch order, however the threads ran
    results.sort_by_key(|(i, _, _)| *i);
    for (_, found, rows) in results {
        problems.extend(found);
        table.extend(rows);
    }
    eprintln!("{}", table.join("\n"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The backend loads cubins, not PTX: the same sources must compile straight to one.
#[test]
fn kernels_compile_to_cubin_for_the_device_path() {
    if let Err(why) = nvrtc::supported_archs() {
        return skip(&why);
    }
    if nvrtc::include_dir().is_none() {
        return skip("CUDA headers not found (set JOULEBENCH_CUDA_INCLUDE)");
    }
    for file in FILES {
        let c = nvrtc::compile_fresh(file, Arch::new(9, 0), Target::Cubin)
            .unwrap_or_else(|e| panic!("{e}"));
        // An ELF image: what cuModuleLoadData takes.
        assert_eq!(&c.image[..4], b"\x7fELF", "{} is not a cubin", file.name);
        assert!(c.ptx().is_none());
    }
}

#[test]
fn compiled_kernels_are_cached_in_memory_and_on_disk() {
    if let Err(why) = nvrtc::supported_archs() {
        return skip(&why);
    }
    if nvrtc::include_dir().is_none() {
        return skip("CUDA headers not found (set JOULEBENCH_CUDA_INCLUDE)");
    }
    let dir = std::env::temp_dir().join(format!("jb-nvrtc-cache-{}", std::process::id()));
    let file = &joulebench_cuda::kernels::SOFTMAX_ROWS;
    let first = nvrtc::compile_with_cache(file, Arch::new(8, 0), Target::Ptx, Some(&dir)).unwrap();
    let second = nvrtc::compile_with_cache(file, Arch::new(8, 0), Target::Ptx, Some(&dir)).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "second compile must hit memory"
    );
    let on_disk: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(on_disk.len(), 1);
    let name = on_disk[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with("softmax_rows-compute_80-") && name.ends_with(".ptx"),
        "{name}"
    );
    assert_eq!(std::fs::read(on_disk[0].path()).unwrap(), first.image);
    // Another architecture is another entry.
    nvrtc::compile_with_cache(file, Arch::new(9, 0), Target::Ptx, Some(&dir)).unwrap();
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ptxas_report_is_parsed() {
    let report = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'matmul_f16' for 'sm_80'\n\
ptxas info    : Function properties for matmul_f16\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 168 registers, used 1 barriers, 16640 bytes smem, 384 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'softmax_rows_f16' for 'sm_80'\n\
ptxas info    : Function properties for softmax_rows_f16\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 20 registers, used 1 barriers, 64 bytes smem, 384 bytes cmem[0]\n";
    let r = parse_ptxas(report);
    let m = &r["matmul_f16"];
    assert_eq!(
        (
            m.registers,
            m.static_smem_bytes,
            m.spill_store_bytes,
            m.spill_load_bytes,
            m.stack_frame_bytes
        ),
        (168, 16640, 4, 12, 8)
    );
    assert_eq!(r["softmax_rows_f16"].registers, 20);
    let ptx =
        ".visible .entry matmul_f16(\n .param .u64 a\n)\n.maxntid 256, 1, 1\n.minnctapersm 2\n{\n}";
    assert_eq!(launch_bounds(ptx, "matmul_f16"), (Some(256), Some(2)));
}

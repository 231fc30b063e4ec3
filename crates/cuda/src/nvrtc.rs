//! Kernels are compiled at run time by NVRTC for the GPU actually present (its own
//! sm_XY, not a fat binary guessed at build time), and cached in memory and on disk,
//! keyed by a hash of the sources, the target and every option — so a sweep compiles
//! each kernel file once per machine and an edited kernel is never served stale.

use crate::kernels::{KernelFile, HEADERS};
use crate::probe;
use cudarc::nvrtc::sys as nvrtc_sys;
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// What NVRTC produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Machine code for one GPU (`sm_XY`): loads without the driver's JIT, and needs only
    /// a driver as new as the CUDA major version of the NVRTC that made it.
    Cubin,
    /// PTX for a virtual architecture (`compute_XY`): what ptxas reads, and the fallback
    /// when NVRTC is older than the GPU.
    Ptx,
}

/// A compute capability, e.g. 9.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    pub fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }
    /// 90 for 9.0, as NVRTC's architecture list spells it.
    pub fn number(&self) -> u32 {
        self.major * 10 + self.minor
    }
    /// "sm_90" for a cubin, "compute_90" for PTX.
    pub fn target_name(&self, target: Target) -> String {
        match target {
            Target::Cubin => format!("sm_{}", self.number()),
            Target::Ptx => format!("compute_{}", self.number()),
        }
    }
}

/// A compiled kernel file.
#[derive(Debug)]
pub struct Compiled {
    pub file: &'static str,
    pub target: Target,
    /// "sm_90" or "compute_90".
    pub target_name: String,
    /// Cubin bytes, or PTX text (without a trailing NUL).
    pub image: Vec<u8>,
    /// NVRTC's log (warnings), empty when clean or when served from the disk cache.
    pub log: String,
    pub from_disk_cache: bool,
}

impl Compiled {
    /// The PTX text of a [`Target::Ptx`] compilation.
    pub fn ptx(&self) -> Option<&str> {
        match self.target {
            Target::Ptx => std::str::from_utf8(&self.image).ok(),
            Target::Cubin => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Unavailable(String),
    #[error("NVRTC cannot compile {file}.cu for {target}: {log}")]
    Failed {
        file: String,
        target: String,
        log: String,
    },
    #[error("NVRTC {step} failed for {file}.cu: {code}")]
    Api {
        file: String,
        step: &'static str,
        code: String,
    },
}

/// Where the CUDA headers (cuda_fp16.h, cuda_bf16.h) are: `JOULEBENCH_CUDA_INCLUDE`, else
/// `$CUDA_HOME/include`, `$CUDA_PATH/include`, `/usr/local/cuda/include`; the first that
/// holds cuda_fp16.h.
pub fn include_dir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("JOULEBENCH_CUDA_INCLUDE") {
        candidates.push(PathBuf::from(dir));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = std::env::var_os(var) {
            candidates.push(PathBuf::from(root).join("include"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    candidates
        .into_iter()
        .find(|d| d.join("cuda_fp16.h").is_file())
}

/// The architectures this NVRTC can compile for (e.g. [50, 52, …, 90, 100, 120]).
pub fn supported_archs() -> Result<Vec<u32>, String> {
    probe::nvrtc_library()?;
    let mut n: std::ffi::c_int = 0;
    // SAFETY: library and symbols were checked by `nvrtc_library`.
    unsafe { nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) }
        .result()
        .map_err(|e| format!("nvrtcGetNumSupportedArchs: {e:?}"))?;
    let mut archs = vec![0 as std::ffi::c_int; n.max(0) as usize];
    // SAFETY: the buffer holds the number of entries NVRTC just reported.
    unsafe { nvrtc_sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
        .result()
        .map_err(|e| format!("nvrtcGetSupportedArchs: {e:?}"))?;
    Ok(archs.into_iter().map(|a| a.max(0) as u32).collect())
}

/// The target to compile for on a device of `arch`: a cubin for the device itself when
/// NVRTC knows it; otherwise PTX for the newest architecture NVRTC knows below it,
/// which the driver then compiles (JIT) for the device.
pub fn target_for_device(arch: Arch) -> Result<(Arch, Target), String> {
    let archs = supported_archs()?;
    if archs.contains(&arch.number()) {
        return Ok((arch, Target::Cubin));
    }
    let best = archs
        .iter()
        .copied()
        .filter(|&a| a <= arch.number())
        .max()
        .ok_or_else(|| {
            format!(
                "NVRTC supports none of sm_{} or older (it knows {:?})",
                arch.number(),
                archs
            )
        })?;
    Ok((Arch::new(best / 10, best % 10), Target::Ptx))
}

/// Options for every compilation; part of the cache key.
fn options(file: &KernelFile, arch: Arch, target: Target, include: Option<&Path>) -> Vec<String> {
    let mut opts = vec![
        format!("--gpu-architecture={}", arch.target_name(target)),
        "--std=c++17".to_string(),
        // Line tables cost nothing at run time and let profilers map back to the source.
        "--generate-line-info".to_string(),
    ];
    if let Some(dir) = include {
        opts.push(format!("--include-path={}", dir.display()));
    }
    opts.extend(file.launch_defines());
    opts
}

/// FNV-1a, 64 bit: a stable hash (unlike std's) for cache file names.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // separator, so ("ab","c") and ("a","bc") differ
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The on-disk cache: `JOULEBENCH_CACHE_DIR/cuda`, else `$XDG_CACHE_HOME/joulebench/cuda`,
/// else `~/.cache/joulebench/cuda`. None when no location is known.
pub fn disk_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("JOULEBENCH_CACHE_DIR") {
        return Some(PathBuf::from(dir).join("cuda"));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("joulebench").join("cuda"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/joulebench/cuda"))
}

type MemoryCache = Mutex<HashMap<u64, Arc<Compiled>>>;
fn memory_cache() -> &'static MemoryCache {
    static CACHE: OnceLock<MemoryCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compile `file` for `arch`, from the memory or disk cache when the same sources,
/// target, options and NVRTC version were compiled before.
pub fn compile(
    file: &KernelFile,
    arch: Arch,
    target: Target,
) -> Result<Arc<Compiled>, CompileError> {
    compile_with_cache(file, arch, target, disk_cache_dir().as_deref())
}

/// [`compile`] with an explicit on-disk cache directory (None: memory cache only).
pub fn compile_with_cache(
    file: &KernelFile,
    arch: Arch,
    target: Target,
    disk_dir: Option<&Path>,
) -> Result<Arc<Compiled>, CompileError> {
    let (major, minor) = probe::nvrtc_version().map_err(CompileError::Unavailable)?;
    let include = include_dir();
    let opts = options(file, arch, target, include.as_deref());
    let version = format!("nvrtc {major}.{minor}");
    let mut parts: Vec<&[u8]> = vec![version.as_bytes(), file.source.as_bytes()];
    for (name, text) in HEADERS {
        parts.push(name.as_bytes());
        parts.push(text.as_bytes());
    }
    parts.extend(opts.iter().map(|o| o.as_bytes()));
    let key = fnv1a(&parts);

    if let Ok(cache) = memory_cache().lock() {
        if let Some(hit) = cache.get(&key) {
            return Ok(hit.clone());
        }
    }
    let target_name = arch.target_name(target);
    let ext = match target {
        Target::Cubin => "cubin",
        Target::Ptx => "ptx",
    };
    let disk_path =
        disk_dir.map(|d| d.join(format!("{}-{target_name}-{key:016x}.{ext}", file.name)));

    let compiled = match disk_path.as_deref().and_then(|p| std::fs::read(p).ok()) {
        Some(image) if !image.is_empty() => Compiled {
            file: file.name,
            target,
            target_name,
            image,
            log: String::new(),
            from_disk_cache: true,
        },
        _ => {
            let (image, log) = compile_uncached(file, target, &opts, include.is_some())?;
            if let Some(path) = &disk_path {
                // A cache that cannot be written only costs a recompilation next time.
                let _ = write_atomically(path, &image);
            }
            Compiled {
                file: file.name,
                target,
                target_name,
                image,
                log,
                from_disk_cache: false,
            }
        }
    };
    let compiled = Arc::new(compiled);
    if let Ok(mut cache) = memory_cache().lock() {
        cache.insert(key, compiled.clone());
    }
    Ok(compiled)
}

/// Compile `file` for `arch` bypassing both caches: what a test of the compiler wants.
pub fn compile_fresh(
    file: &KernelFile,
    arch: Arch,
    target: Target,
) -> Result<Compiled, CompileError> {
    probe::nvrtc_version().map_err(CompileError::Unavailable)?;
    let include = include_dir();
    let opts = options(file, arch, target, include.as_deref());
    let (image, log) = compile_uncached(file, target, &opts, include.is_some())?;
    Ok(Compiled {
        file: file.name,
        target,
        target_name: arch.target_name(target),
        image,
        log,
        from_disk_cache: false,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Another process may write the same entry at once; rename makes either copy whole.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// An NVRTC program, destroyed on every exit path.
struct Program {
    handle: nvrtc_sys::nvrtcProgram,
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the handle came from nvrtcCreateProgram and is destroyed once.
        let _ = unsafe { nvrtc_sys::nvrtcDestroyProgram(&mut self.handle) };
    }
}

fn cstring(s: &str, file: &str) -> Result<CString, CompileError> {
    CString::new(s).map_err(|_| CompileError::Api {
        file: file.to_string(),
        step: "argument conversion",
        code: format!("interior NUL in {s:?}"),
    })
}

fn compile_uncached(
    file: &KernelFile,
    target: Target,
    opts: &[String],
    have_headers: bool,
) -> Result<(Vec<u8>, String), CompileError> {
    probe::nvrtc_library().map_err(CompileError::Unavailable)?;
    let api = |step: &'static str| {
        move |code: nvrtc_sys::nvrtcResult| CompileError::Api {
            file: file.name.to_string(),
            step,
            code: format!("{code:?}"),
        }
    };
    let src = cstring(file.source, file.name)?;
    let name = cstring(&format!("{}.cu", file.name), file.name)?;
    let header_texts: Vec<CString> = HEADERS
        .iter()
        .map(|(_, t)| cstring(t, file.name))
        .collect::<Result<_, _>>()?;
    let header_names: Vec<CString> = HEADERS
        .iter()
        .map(|(n, _)| cstring(n, file.name))
        .collect::<Result<_, _>>()?;
    let text_ptrs: Vec<*const c_char> = header_texts.iter().map(|c| c.as_ptr()).collect();
    let name_ptrs: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();

    let mut handle: nvrtc_sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer refers to a live NUL-terminated string; counts match.
    unsafe {
        nvrtc_sys::nvrtcCreateProgram(
            &mut handle,
            src.as_ptr(),
            name.as_ptr(),
            text_ptrs.len() as i32,
            text_ptrs.as_ptr(),
            name_ptrs.as_ptr(),
        )
    }
    .result()
    .map_err(|e| api("nvrtcCreateProgram")(e.0))?;
    let program = Program { handle };

    let c_opts: Vec<CString> = opts
        .iter()
        .map(|o| cstring(o, file.name))
        .collect::<Result<_, _>>()?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();
    // SAFETY: as above.
    let status = unsafe {
        nvrtc_sys::nvrtcCompileProgram(program.handle, opt_ptrs.len() as i32, opt_ptrs.as_ptr())
    };
    let log = program_log(&program);
    if status != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
        let hint = if !have_headers && log.contains("cuda_fp16.h") {
            "\n(no CUDA headers found: set JOULEBENCH_CUDA_INCLUDE or CUDA_HOME to a directory \
             holding cuda_fp16.h and cuda_bf16.h)"
        } else {
            ""
        };
        return Err(CompileError::Failed {
            file: file.name.to_string(),
            target: opts[0]
                .trim_start_matches("--gpu-architecture=")
                .to_string(),
            log: format!("{}{hint}", log.trim()),
        });
    }

    let mut size = 0usize;
    let image = match target {
        Target::Cubin => {
            // SAFETY: compiled program; the buffer is sized from NVRTC's answer.
            unsafe { nvrtc_sys::nvrtcGetCUBINSize(program.handle, &mut size) }
                .result()
                .map_err(|e| api("nvrtcGetCUBINSize")(e.0))?;
            let mut buf = vec![0u8; size];
            unsafe { nvrtc_sys::nvrtcGetCUBIN(program.handle, buf.as_mut_ptr() as *mut c_char) }
                .result()
                .map_err(|e| api("nvrtcGetCUBIN")(e.0))?;
            buf
        }
        Target::Ptx => {
            // SAFETY: as above.
            unsafe { nvrtc_sys::nvrtcGetPTXSize(program.handle, &mut size) }
                .result()
                .map_err(|e| api("nvrtcGetPTXSize")(e.0))?;
            let mut buf = vec![0u8; size];
            unsafe { nvrtc_sys::nvrtcGetPTX(program.handle, buf.as_mut_ptr() as *mut c_char) }
                .result()
                .map_err(|e| api("nvrtcGetPTX")(e.0))?;
            while buf.last() == Some(&0) {
                buf.pop();
            }
            buf
        }
    };
    if image.is_empty() {
        return Err(api("output")(
            nvrtc_sys::nvrtcResult::NVRTC_ERROR_INTERNAL_ERROR,
        ));
    }
    Ok((image, log))
}

fn program_log(program: &Program) -> String {
    let mut size = 0usize;
    // SAFETY: valid program handle; buffer sized from NVRTC's answer.
    if unsafe { nvrtc_sys::nvrtcGetProgramLogSize(program.handle, &mut size) }
        .result()
        .is_err()
        || size == 0
    {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    if unsafe { nvrtc_sys::nvrtcGetProgramLog(program.handle, buf.as_mut_ptr() as *mut c_char) }
        .result()
        .is_err()
    {
        return String::new();
    }
    while buf.last() == Some(&0) {
        buf.pop();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names() {
        let a = Arch::new(8, 9);
        assert_eq!(a.target_name(Target::Cubin), "sm_89");
        assert_eq!(a.target_name(Target::Ptx), "compute_89");
        assert_eq!(Arch::new(10, 0).number(), 100);
    }

    #[test]
    fn hash_separates_parts_and_is_stable() {
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[b"x"]), fnv1a(&[b"x"]));
        // Pinned: a change would silently orphan every existing disk cache entry.
        assert_eq!(fnv1a(&[b"joulebench"]), 0x2749_c7b4_6c11_b699);
    }

    #[test]
    fn options_carry_arch_and_launch_defines() {
        let o = options(
            &crate::kernels::MATMUL_MMA,
            Arch::new(9, 0),
            Target::Cubin,
            Some(Path::new("/inc")),
        );
        assert_eq!(o[0], "--gpu-architecture=sm_90");
        assert!(o.contains(&"--include-path=/inc".to_string()));
        assert!(o.iter().any(|x| x.starts_with("-DJB_SMEM_matmul_f16=")));
    }
}

//! The real amdsmi, opened with `dlopen` at run time (`libamd_smi.so`, from ROCm or
//! the `amd-smi-lib` package), so joulebench builds and runs where it is absent.
//! Every symbol is looked up before use: a missing library or one too old is a
//! message, never a panic. Structures are read only where their layout is known
//! for the library's version (checked against amdsmi.h of ROCm 5.7 to 6.2, library
//! versions 23.x and 24.x); elsewhere the reading is skipped, not guessed.

use super::{AmdIdentity, AmdSmiDevice, AmdSmiError, EnergyCount, PowerCapInfoUw};
use crate::nvml::PciBusId;
use libloading::Library;
use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::{Arc, Mutex, OnceLock};

/// Set to the path of `libamd_smi.so` where it is not on the loader's path.
pub const AMDSMI_LIBRARY_ENV: &str = "JOULEBENCH_AMDSMI_LIBRARY";

const CANDIDATES: [&str; 2] = ["libamd_smi.so", "/opt/rocm/lib/libamd_smi.so"];

type Status = u32;
type Handle = *mut c_void;
const SUCCESS: Status = 0;
const NOT_SUPPORTED: Status = 2;
const NOT_YET_IMPLEMENTED: Status = 3;
const NO_PERM: Status = 10;
const NOT_FOUND: Status = 31;
const INIT_AMD_GPUS: u64 = 1 << 1;
const CLK_TYPE_GFX: u32 = 0;
const CLK_TYPE_MEM: u32 = 4;
const TEMPERATURE_TYPE_HOTSPOT: u32 = 1;
const TEMP_CURRENT: u32 = 0;
/// Byte offset of `indep_throttle_status` in amdsmi_gpu_metrics_t (v1.3 and later).
const INDEP_THROTTLE_OFFSET: usize = 112;
/// Buffers the library writes structures into: larger than any of them.
const BUFFER_BYTES: usize = 16 * 1024;

#[repr(C)]
#[derive(Default)]
struct PowerCapInfo {
    power_cap: u64,
    default_power_cap: u64,
    dpm_cap: u64,
    min_power_cap: u64,
    max_power_cap: u64,
    reserved: [u64; 3],
}

#[repr(C)]
struct Version {
    year: u32,
    major: u32,
    minor: u32,
    release: u32,
    build: *const c_char,
}

type InitFn = unsafe extern "C" fn(u64) -> Status;
type SocketsFn = unsafe extern "C" fn(*mut u32, *mut Handle) -> Status;
type ProcessorsFn = unsafe extern "C" fn(Handle, *mut u32, *mut Handle) -> Status;
type BdfFn = unsafe extern "C" fn(Handle, *mut u64) -> Status;
type UuidFn = unsafe extern "C" fn(Handle, *mut c_uint, *mut c_char) -> Status;
type EnergyFn = unsafe extern "C" fn(Handle, *mut u64, *mut f32, *mut u64) -> Status;
type CapInfoFn = unsafe extern "C" fn(Handle, u32, *mut PowerCapInfo) -> Status;
type SetCapFn = unsafe extern "C" fn(Handle, u32, u64) -> Status;
type ClkFn = unsafe extern "C" fn(Handle, u32, *mut u8) -> Status;
type TempFn = unsafe extern "C" fn(Handle, u32, u32, *mut i64) -> Status;
type BufferFn = unsafe extern "C" fn(Handle, *mut u8) -> Status;
type VersionFn = unsafe extern "C" fn(*mut Version) -> Status;
type StatusStringFn = unsafe extern "C" fn(Status, *mut *const c_char) -> Status;

struct Api {
    // keeps the function pointers below valid
    _lib: Library,
    path: String,
    /// (year, major) of the library, where it says.
    version: Option<(u32, u32)>,
    sockets: SocketsFn,
    processors: ProcessorsFn,
    bdf: BdfFn,
    energy: EnergyFn,
    cap_info: CapInfoFn,
    set_cap: SetCapFn,
    uuid: Option<UuidFn>,
    clk: Option<ClkFn>,
    temp: Option<TempFn>,
    power_info: Option<BufferFn>,
    gpu_metrics: Option<BufferFn>,
    asic_info: Option<BufferFn>,
    status_string: Option<StatusStringFn>,
    /// amdsmi serialises internally; one call at a time here keeps that simple.
    call: Mutex<()>,
}

// The library is thread-safe and its handles are opaque pointers it owns.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

fn required<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, AmdSmiError> {
    // SAFETY: the type is the C signature of `name` in amdsmi.h.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|_| {
            AmdSmiError::Unavailable(format!(
                "{path} has no {name}: this amdsmi is too old; joulebench needs amdsmi 23.2 \
                 (ROCm 5.7) or newer"
            ))
        })
}

fn optional<T: Copy>(lib: &Library, name: &str) -> Option<T> {
    // SAFETY: as in `required`.
    unsafe { lib.get::<T>(name.as_bytes()) }.ok().map(|s| *s)
}

fn load() -> Result<Arc<Api>, AmdSmiError> {
    let explicit = std::env::var(AMDSMI_LIBRARY_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    let candidates: Vec<String> = match &explicit {
        Some(p) => vec![p.clone()],
        None => CANDIDATES.iter().map(|s| s.to_string()).collect(),
    };
    let mut tried = Vec::new();
    let (lib, path) = candidates
        .iter()
        .find_map(|c| {
            // SAFETY: loading runs the library's initialisers, as any dlopen does.
            match unsafe { Library::new(c) } {
                Ok(l) => Some((l, c.clone())),
                Err(e) => {
                    tried.push(format!("{c} ({e})"));
                    None
                }
            }
        })
        .ok_or_else(|| {
            AmdSmiError::Unavailable(format!(
                "libamd_smi.so not found (tried {}); install ROCm's amd-smi library, or set \
                 {AMDSMI_LIBRARY_ENV} to its path",
                tried.join("; ")
            ))
        })?;
    let init: InitFn = required(&lib, &path, "amdsmi_init")?;
    let api = Api {
        sockets: required(&lib, &path, "amdsmi_get_socket_handles")?,
        processors: required(&lib, &path, "amdsmi_get_processor_handles")?,
        bdf: required(&lib, &path, "amdsmi_get_gpu_device_bdf")?,
        energy: required(&lib, &path, "amdsmi_get_energy_count")?,
        cap_info: required(&lib, &path, "amdsmi_get_power_cap_info")?,
        set_cap: required(&lib, &path, "amdsmi_set_power_cap")?,
        uuid: optional(&lib, "amdsmi_get_gpu_device_uuid"),
        clk: optional(&lib, "amdsmi_get_clk_freq"),
        temp: optional(&lib, "amdsmi_get_temp_metric"),
        power_info: optional(&lib, "amdsmi_get_power_info"),
        gpu_metrics: optional(&lib, "amdsmi_get_gpu_metrics_info"),
        asic_info: optional(&lib, "amdsmi_get_gpu_asic_info"),
        status_string: optional(&lib, "amdsmi_status_code_to_string"),
        version: None,
        path: path.clone(),
        call: Mutex::new(()),
        _lib: lib,
    };
    // SAFETY: amdsmi_init(uint64_t) as declared in amdsmi.h.
    let status = unsafe { init(INIT_AMD_GPUS) };
    if status != SUCCESS {
        return Err(AmdSmiError::Unavailable(format!(
            "amdsmi_init failed: {} (is the amdgpu driver loaded?)",
            api.describe(status)
        )));
    }
    let version_fn: Option<VersionFn> = optional(&api._lib, "amdsmi_get_lib_version");
    let version = version_fn.and_then(|f| {
        let mut v = Version {
            year: 0,
            major: 0,
            minor: 0,
            release: 0,
            build: std::ptr::null(),
        };
        // SAFETY: amdsmi_get_lib_version(amdsmi_version_t*), a struct of this layout.
        (unsafe { f(&mut v) } == SUCCESS).then_some((v.year, v.major))
    });
    Ok(Arc::new(Api { version, ..api }))
}

fn api() -> Result<Arc<Api>, AmdSmiError> {
    static API: OnceLock<Result<Arc<Api>, AmdSmiError>> = OnceLock::new();
    API.get_or_init(load).clone()
}

/// Why amdsmi cannot be used here, or `None` if it can.
pub fn amdsmi_unavailable_reason() -> Option<String> {
    api().err().map(|e| e.to_string())
}

impl Api {
    fn describe(&self, status: Status) -> String {
        let text = self.status_string.and_then(|f| {
            let mut s: *const c_char = std::ptr::null();
            // SAFETY: amdsmi_status_code_to_string writes a pointer to a static string.
            if unsafe { f(status, &mut s) } == SUCCESS && !s.is_null() {
                // SAFETY: a NUL-terminated string owned by the library.
                Some(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
            } else {
                None
            }
        });
        match text {
            Some(t) => format!("{t} (status {status})"),
            None => format!("status {status}"),
        }
    }

    fn check(&self, status: Status, what: &str) -> Result<(), AmdSmiError> {
        match status {
            SUCCESS => Ok(()),
            NOT_SUPPORTED | NOT_YET_IMPLEMENTED => Err(AmdSmiError::NotSupported),
            NO_PERM => Err(AmdSmiError::NoPermission(format!(
                "{what}: {}",
                self.describe(status)
            ))),
            NOT_FOUND => Err(AmdSmiError::NotFound(format!(
                "{what}: {}",
                self.describe(status)
            ))),
            _ => Err(AmdSmiError::Failed(format!(
                "{what}: {}",
                self.describe(status)
            ))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.call.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether structures are laid out as in amdsmi 23.4 to 24.x.
    fn layout_known(&self) -> bool {
        matches!(self.version, Some((23, m)) if m >= 4) || matches!(self.version, Some((24, _)))
    }
}

/// One GPU of the real library.
pub struct RealAmdSmi {
    api: Arc<Api>,
    handle: usize,
}

pub(super) fn list_real_devices() -> Result<Vec<RealAmdSmi>, AmdSmiError> {
    let api = api()?;
    let _g = api.lock();
    let mut count: u32 = 0;
    // SAFETY: a null array asks for the count, as amdsmi.h documents.
    api.check(
        unsafe { (api.sockets)(&mut count, std::ptr::null_mut()) },
        "listing sockets",
    )?;
    let mut sockets: Vec<Handle> = vec![std::ptr::null_mut(); count as usize];
    // SAFETY: `sockets` has room for `count` handles.
    api.check(
        unsafe { (api.sockets)(&mut count, sockets.as_mut_ptr()) },
        "listing sockets",
    )?;
    sockets.truncate(count as usize);
    let mut devices = Vec::new();
    for s in sockets {
        let mut n: u32 = 0;
        // SAFETY: as above, per socket.
        api.check(
            unsafe { (api.processors)(s, &mut n, std::ptr::null_mut()) },
            "listing processors",
        )?;
        let mut procs: Vec<Handle> = vec![std::ptr::null_mut(); n as usize];
        // SAFETY: `procs` has room for `n` handles.
        api.check(
            unsafe { (api.processors)(s, &mut n, procs.as_mut_ptr()) },
            "listing processors",
        )?;
        procs.truncate(n as usize);
        devices.extend(procs.into_iter().map(|p| RealAmdSmi {
            api: api.clone(),
            handle: p as usize,
        }));
    }
    Ok(devices)
}

impl RealAmdSmi {
    fn h(&self) -> Handle {
        self.handle as Handle
    }

    /// Calls `f` with a zeroed buffer larger than the structure it fills.
    fn with_buffer(&self, f: BufferFn, what: &str) -> Result<Vec<u8>, AmdSmiError> {
        let mut buf = vec![0u8; BUFFER_BYTES];
        let _g = self.api.lock();
        // SAFETY: the buffer is larger than the structure of every known version.
        self.api
            .check(unsafe { f(self.h(), buf.as_mut_ptr()) }, what)?;
        Ok(buf)
    }
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// amdsmi_bdf_t: function 3 bits, device 5, bus 8, domain 48.
fn bdf_to_pci(bdf: u64) -> PciBusId {
    PciBusId {
        function: (bdf & 0x7) as u8,
        device: ((bdf >> 3) & 0x1f) as u8,
        bus: ((bdf >> 8) & 0xff) as u8,
        domain: ((bdf >> 16) & 0xffff_ffff) as u32,
    }
}

impl AmdSmiDevice for RealAmdSmi {
    fn identity(&self) -> Result<AmdIdentity, AmdSmiError> {
        let mut bdf: u64 = 0;
        {
            let _g = self.api.lock();
            // SAFETY: amdsmi_bdf_t is a 64-bit union.
            self.api.check(
                unsafe { (self.api.bdf)(self.h(), &mut bdf) },
                "reading the PCI address",
            )?;
        }
        let pci = bdf_to_pci(bdf);
        let uuid = self.api.uuid.and_then(|f| {
            let mut buf = [0 as c_char; 128];
            let mut len: c_uint = buf.len() as c_uint;
            let _g = self.api.lock();
            // SAFETY: `len` says how much room `buf` has.
            (unsafe { f(self.h(), &mut len, buf.as_mut_ptr()) } == SUCCESS).then(|| {
                // SAFETY: NUL-terminated within the buffer, which was zeroed.
                unsafe { CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            })
        });
        let market = self
            .api
            .asic_info
            .and_then(|f| self.with_buffer(f, "reading the ASIC name").ok())
            .and_then(|buf| {
                // market_name is the first field in every version, 64 or 256 bytes
                let end = buf[..256].iter().position(|b| *b == 0)?;
                String::from_utf8(buf[..end].to_vec()).ok()
            })
            .filter(|n| !n.trim().is_empty());
        Ok(AmdIdentity {
            name: market.unwrap_or_else(|| format!("AMD GPU {pci}")),
            uuid: uuid.filter(|u| !u.is_empty()),
            pci_bus_id: Some(pci),
            driver_version: None,
            fake: false,
        })
    }

    fn energy_count(&self) -> Result<EnergyCount, AmdSmiError> {
        let (mut ticks, mut res, mut ts) = (0u64, 0f32, 0u64);
        let _g = self.api.lock();
        // SAFETY: three scalar out-parameters, as declared in amdsmi.h.
        self.api.check(
            unsafe { (self.api.energy)(self.h(), &mut ticks, &mut res, &mut ts) },
            "reading the energy counter",
        )?;
        Ok(EnergyCount {
            ticks,
            resolution_uj: res as f64,
            timestamp_ns: ts,
        })
    }

    fn power_w(&self) -> Result<Option<f64>, AmdSmiError> {
        let Some(f) = self.api.power_info else {
            return Ok(None);
        };
        let offset = match self.api.version {
            // 23.2 and 23.3 begin with average_socket_power
            Some((23, m)) if m < 4 => 0,
            // then current_socket_power, average_socket_power
            _ if self.api.layout_known() => 0,
            _ => return Ok(None),
        };
        match self.with_buffer(f, "reading power") {
            Ok(buf) => Ok(u32_at(&buf, offset).map(|w| w as f64)),
            Err(AmdSmiError::NotSupported) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn clocks_mhz(&self) -> Result<(Option<u32>, Option<u32>), AmdSmiError> {
        let Some(f) = self.api.clk else {
            return Ok((None, None));
        };
        let read = |clk: u32| -> Option<u32> {
            let mut buf = vec![0u8; BUFFER_BYTES];
            let _g = self.api.lock();
            // SAFETY: amdsmi_frequencies_t {bool; u32 num; u32 current; u64 freq[33]}
            // fits the buffer.
            if unsafe { f(self.h(), clk, buf.as_mut_ptr()) } != SUCCESS {
                return None;
            }
            let num = u32_at(&buf, 4)? as usize;
            let current = u32_at(&buf, 8)? as usize;
            (current < num.min(33)).then_some(())?;
            u64_at(&buf, 16 + 8 * current).map(|hz| (hz / 1_000_000) as u32)
        };
        Ok((read(CLK_TYPE_GFX), read(CLK_TYPE_MEM)))
    }

    fn temperature_c(&self) -> Result<Option<u32>, AmdSmiError> {
        let Some(f) = self.api.temp else {
            return Ok(None);
        };
        let mut t: i64 = 0;
        let _g = self.api.lock();
        // SAFETY: one int64_t out-parameter; the library returns °C (its source
        // divides rocm_smi's millidegrees by 1000, whatever the header says).
        let status = unsafe { f(self.h(), TEMPERATURE_TYPE_HOTSPOT, TEMP_CURRENT, &mut t) };
        Ok((status == SUCCESS && t >= 0).then_some(t as u32))
    }

    fn throttle_status(&self) -> Result<Option<u64>, AmdSmiError> {
        let Some(f) = self.api.gpu_metrics else {
            return Ok(None);
        };
        if !self.api.layout_known() {
            return Ok(None);
        }
        match self.with_buffer(f, "reading gpu_metrics") {
            Ok(buf) => Ok(u64_at(&buf, INDEP_THROTTLE_OFFSET).filter(|b| *b != u64::MAX)),
            Err(AmdSmiError::NotSupported) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn power_cap_info(&self) -> Result<PowerCapInfoUw, AmdSmiError> {
        let mut info = PowerCapInfo::default();
        let _g = self.api.lock();
        // SAFETY: amdsmi_power_cap_info_t, unchanged from ROCm 5.7 to 6.2.
        self.api.check(
            unsafe { (self.api.cap_info)(self.h(), 0, &mut info) },
            "reading the power cap",
        )?;
        Ok(PowerCapInfoUw {
            cap_uw: info.power_cap,
            default_uw: info.default_power_cap,
            min_uw: info.min_power_cap,
            max_uw: info.max_power_cap,
        })
    }

    fn set_power_cap_uw(&self, cap_uw: u64) -> Result<(), AmdSmiError> {
        let _g = self.api.lock();
        // SAFETY: scalar arguments.
        self.api.check(
            unsafe { (self.api.set_cap)(self.h(), 0, cap_uw) },
            "setting the power cap",
        )
    }
}

impl std::fmt::Debug for RealAmdSmi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RealAmdSmi({}, {:#x})", self.api.path, self.handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bdf_union_is_a_pci_address() {
        // domain 0, bus 0x03, device 0x00, function 0
        assert_eq!(bdf_to_pci(0x03 << 8).to_string(), "0000:03:00.0");
        let raw = (1u64 << 16) | (0xc1 << 8) | (0x1f << 3) | 7;
        assert_eq!(bdf_to_pci(raw).to_string(), "0001:c1:1f.7");
    }

    #[test]
    fn a_missing_library_is_a_message_not_a_panic() {
        if std::path::Path::new("/opt/rocm/lib/libamd_smi.so").exists() {
            eprintln!("skipped: a real libamd_smi.so is installed here");
            return;
        }
        let reason = amdsmi_unavailable_reason().unwrap();
        assert!(reason.contains("libamd_smi.so"), "{reason}");
    }
}

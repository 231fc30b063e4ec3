//! Results files written by earlier versions of joulebench stay readable: a reader
//! that refused them would lose a user's measurements.

use joulebench_core::protocol::TimeBase;
use joulebench_core::record::read_records;
use std::path::Path;

/// Schema-2 records written before one time base summarised device time (CUDA
/// events, timestamps) while their windows' `seconds` are the windows' own
/// intervals; the readers' cross-check of summary against windows takes that
/// time base, not today's.
#[test]
fn schema_2_records_summarised_on_device_time_still_read() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema2-device-time.jsonl");
    let records = read_records(&path).unwrap();
    assert_eq!(records.len(), 2);
    for r in &records {
        let m = r.measurement.as_ref().unwrap();
        assert_eq!(m.summary.time_base, TimeBase::Device);
        // the case the check must tell apart: device time per op differs from the
        // windows' own time per op
        let w = &m.windows[0];
        let device = w.device_s.unwrap() / w.iterations;
        assert!((device - w.seconds / w.iterations).abs() > 1e-12);
    }
}

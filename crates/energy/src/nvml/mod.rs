//! NVML energy meters, telemetry and power control.

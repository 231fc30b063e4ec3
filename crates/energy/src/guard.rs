//! Power-cap changes with guaranteed restore.

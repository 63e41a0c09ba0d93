//! docfleet-scaler (work in progress).

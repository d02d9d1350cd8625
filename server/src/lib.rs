//! The SplitSave server library: configuration, HTTP, auth, storage.

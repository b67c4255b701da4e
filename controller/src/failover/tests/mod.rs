mod observers;
mod patches;
mod pinning;
mod properties;
mod scenarios;
mod support;

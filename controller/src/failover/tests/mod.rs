mod patches;
mod properties;
mod scenarios;
mod support;

// Package config owns where keepup keeps its state (KEEPUP_HOME) and the configuration it
// reads at start: the user's KEEPUP_HOME/config.json, the managed policy at
// KEEPUP_MANAGED_POLICY, and the checks of the Cowork profile. It decodes both files strictly
// and hands their rules to internal/policy ready to use.
//
// It must never read configuration from anywhere else: not from a granted folder, an upload,
// the working directory or anything a task touches (see ReadsConfigFromGrants). It must never
// ignore a malformed file: every error names the file and the field. It decides nothing about
// actions itself; internal/policy does.
package config

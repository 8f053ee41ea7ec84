// Package server owns keepup's local HTTP interface: the JSON API under /api, the event stream
// over server-sent events, the bearer-token check every endpoint goes through, the listeners (a
// loopback TCP address and a Unix socket) and the daemon.json file that tells the CLI where the
// daemon is and which token it takes.
//
// It only translates: requests into calls on a Backend (the queue), the Backend's errors into
// HTTP statuses with a JSON body naming the field. It must never decide policy, run tasks or
// touch the database itself, and it must never listen beyond loopback unless configured to.
//
// Errors always have the body
//
//	{"error": {"code": "bad_request", "field": "prompt", "message": "prompt: empty"}}
//
// with code one of bad_request, unauthorized, not_found, method_not_allowed, conflict,
// too_large or internal. The routes are described by the OpenAPI document served at
// /api/openapi.json (openapi.json in this directory).
package server

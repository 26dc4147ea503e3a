package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"

	"haxd/ha"

	"haxd/unixsock"
)

// Backend is what the agent provides to the API. Implementations apply each
// change atomically through the replicated store; they return *Error for
// requests the current state forbids.
type Backend interface {
	// Status returns the cluster state as this node sees it.
	Status(ctx context.Context) (*Status, error)
	// AddResource adds cfg (with its type-specific spec); it fails with a
	// Conflict if the SID exists.
	AddResource(ctx context.Context, cfg ha.ResourceConfig, spec json.RawMessage) error
	// UpdateResource applies ch to sid's config in one atomic store
	// operation with its checks (a service in the error state may only be
	// disabled; the group must exist), never touching its location.
	UpdateResource(ctx context.Context, sid ha.SID, ch ResourceChange) error
	// RemoveResource deletes sid's config, and with purge its rule memberships.
	RemoveResource(ctx context.Context, sid ha.SID, purge bool) error
	// QueueCRMCommand appends one line to the CRM command queue.
	QueueCRMCommand(ctx context.Context, line string) error
	// Rules returns the rules config text.
	Rules(ctx context.Context) (string, error)
	// SetRules validates and stores the rules config text.
	SetRules(ctx context.Context, text string) error
	// Groups returns the legacy HA groups config text.
	Groups(ctx context.Context) (string, error)
	// SetGroups validates and stores the legacy HA groups config text;
	// the CRM migrates groups to node-affinity rules.
	SetGroups(ctx context.Context, text string) error
	// RemoveNode removes a dead node from the cluster membership.
	RemoveNode(ctx context.Context, node string) error
	// Datacenter returns the cluster-wide settings.
	Datacenter(ctx context.Context) (*ha.Datacenter, error)
	// UpdateDatacenter applies fn to the stored settings atomically.
	UpdateDatacenter(ctx context.Context, fn func(*ha.Datacenter) error) error
}

// maxBody bounds request bodies (rules text is the largest).
const maxBody = 1 << 20

// Server serves the API for a Backend.
type Server struct {
	backend Backend
	log     *slog.Logger
	mux     *http.ServeMux
}

// NewServer returns a Server for b.
func NewServer(b Backend, log *slog.Logger) *Server {
	s := &Server{backend: b, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/status", serveGet(s, b.Status))
	s.mux.HandleFunc("POST /v1/resources", s.addResource)
	s.mux.HandleFunc("PUT /v1/resources", s.setResource)
	s.mux.HandleFunc("DELETE /v1/resources", s.removeResource)
	s.mux.HandleFunc("POST /v1/migrate", s.move("migrate"))
	s.mux.HandleFunc("POST /v1/relocate", s.move("relocate"))
	s.mux.HandleFunc("POST /v1/stop", s.stop)
	s.mux.HandleFunc("POST /v1/node-maintenance", s.nodeMaintenance)
	s.mux.HandleFunc("POST /v1/disarm", s.disarm)
	s.mux.HandleFunc("POST /v1/arm", s.arm)
	s.mux.HandleFunc("GET /v1/rules", s.textGet(b.Rules))
	s.mux.HandleFunc("PUT /v1/rules", s.textSet(b.SetRules))
	s.mux.HandleFunc("GET /v1/groups", s.textGet(b.Groups))
	s.mux.HandleFunc("PUT /v1/groups", s.textSet(b.SetGroups))
	s.mux.HandleFunc("POST /v1/node-remove", s.nodeRemove)
	s.mux.HandleFunc("GET /v1/datacenter", serveGet(s, b.Datacenter))
	s.mux.HandleFunc("PUT /v1/datacenter", s.setDatacenter)
	if ml, ok := b.(MemberLister); ok {
		s.mux.HandleFunc("GET /v1/members", s.members(ml))
	}
	return s
}

// ServeHTTP implements http.Handler. Unknown paths get a JSON 404 and
// known paths with the wrong method a JSON 405 with an Allow header, like
// every other error of the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := s.mux.Handler(probe); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, &Error{Code: http.StatusMethodNotAllowed,
				Message: fmt.Sprintf("method %s not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
			return
		}
		writeJSON(w, http.StatusNotFound, &Error{Code: http.StatusNotFound, Message: fmt.Sprintf("no API endpoint %s", r.URL.Path)})
		return
	}
	s.mux.ServeHTTP(w, r)
}

// ListenUnix creates the API's unix socket at path with the given mode
// (0600 when zero): unixsock.Listen, which replaces a stale socket but
// never one another process serves.
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	return unixsock.Listen(path, mode, 0o755)
}

// serveGet serves what get returns as JSON, or get's error.
func serveGet[T any](s *Server, get func(context.Context) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := get(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func (s *Server) addResource(w http.ResponseWriter, r *http.Request) {
	var req AddResourceRequest
	if !s.decode(w, r, &req) {
		return
	}
	sid, ok := s.sid(w, r, req.SID)
	if !ok {
		return
	}
	if req.Node != "" && !s.nodeName(w, r, req.Node) {
		return
	}
	cfg := ha.DefaultResourceConfig(sid, req.Node)
	if req.State != "" {
		st, ok := ha.ParseRequestedState(req.State)
		if !ok {
			s.fail(w, r, BadRequest("state", req.State, "expected started, stopped, disabled or ignored"))
			return
		}
		cfg.State = st
	}
	if e := applyLimits(&cfg, req.MaxRestart, req.MaxRelocate); e != nil {
		s.fail(w, r, e)
		return
	}
	if req.Failback != nil {
		cfg.Failback = *req.Failback
	}
	if len(req.Comment) > ha.MaxCommentLen {
		s.fail(w, r, BadRequest("comment", req.Comment[:20]+"...", "longer than %d characters", ha.MaxCommentLen))
		return
	}
	cfg.Comment = req.Comment
	if req.Group != "" {
		if err := ha.CheckConfigID("group", req.Group); err != nil {
			s.fail(w, r, BadRequest("group", req.Group, "%v", err))
			return
		}
	}
	cfg.Group = req.Group
	if req.Cores < 0 || req.Cores > 4096 || req.Cores != req.Cores {
		s.fail(w, r, BadRequest("cores", req.Cores, "expected a number of cores from 0 to 4096"))
		return
	}
	if req.MemoryMB < 0 || req.MemoryMB > 1<<30 {
		s.fail(w, r, BadRequest("memory_mb", req.MemoryMB, "expected MiB from 0 to 1073741824"))
		return
	}
	cfg.Cores, cfg.MemoryMB = req.Cores, req.MemoryMB
	if err := s.backend.AddResource(r.Context(), cfg, req.Spec); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("resource added", ha.KeySID, sid)
	writeJSON(w, http.StatusOK, struct{}{})
}

func applyLimits(cfg *ha.ResourceConfig, maxRestart, maxRelocate *int) *Error {
	if maxRestart != nil {
		if *maxRestart < 0 {
			return BadRequest("max_restart", *maxRestart, "expected an integer >= 0")
		}
		cfg.MaxRestart = *maxRestart
	}
	if maxRelocate != nil {
		if *maxRelocate < 0 {
			return BadRequest("max_relocate", *maxRelocate, "expected an integer >= 0")
		}
		cfg.MaxRelocate = *maxRelocate
	}
	return nil
}

func (s *Server) setResource(w http.ResponseWriter, r *http.Request) {
	var req SetResourceRequest
	if !s.decode(w, r, &req) {
		return
	}
	sid, ok := s.sid(w, r, req.SID)
	if !ok {
		return
	}
	ch := ResourceChange{ExpectRevision: req.ExpectRevision, Failback: req.Failback, Comment: req.Comment, Group: req.Group}
	if req.State != nil {
		st, ok := ha.ParseRequestedState(*req.State)
		if !ok {
			s.fail(w, r, BadRequest("state", *req.State, "expected started, stopped, disabled or ignored"))
			return
		}
		ch.State = &st
	}
	for _, l := range []struct {
		name string
		v    *int
	}{{"max_restart", req.MaxRestart}, {"max_relocate", req.MaxRelocate}} {
		if l.v != nil && *l.v < 0 {
			s.fail(w, r, BadRequest(l.name, *l.v, "expected an integer >= 0"))
			return
		}
	}
	ch.MaxRestart, ch.MaxRelocate = req.MaxRestart, req.MaxRelocate
	if req.Comment != nil && len(*req.Comment) > ha.MaxCommentLen {
		s.fail(w, r, BadRequest("comment", "...", "longer than %d characters", ha.MaxCommentLen))
		return
	}
	if req.Group != nil && *req.Group != "" {
		if err := ha.CheckConfigID("group", *req.Group); err != nil {
			s.fail(w, r, BadRequest("group", *req.Group, "%v", err))
			return
		}
	}
	if req.Spec != nil {
		if !json.Valid(req.Spec) || len(req.Spec) == 0 || req.Spec[0] != '{' {
			s.fail(w, r, BadRequest("spec", string(req.Spec), "expected a JSON object (a merge patch of the spec)"))
			return
		}
		ch.SpecPatch = req.Spec
	}
	if ch.State == nil && ch.Group == nil && ch.MaxRestart == nil && ch.MaxRelocate == nil && ch.Failback == nil &&
		ch.Comment == nil && ch.SpecPatch == nil {
		s.fail(w, r, &Error{Code: http.StatusBadRequest, Message: "nothing to change: give at least one field"})
		return
	}
	if err := s.backend.UpdateResource(r.Context(), sid, ch); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("resource changed", ha.KeySID, sid)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) removeResource(w http.ResponseWriter, r *http.Request) {
	var req RemoveResourceRequest
	if !s.decode(w, r, &req) {
		return
	}
	sid, ok := s.sid(w, r, req.SID)
	if !ok {
		return
	}
	purge := req.Purge == nil || *req.Purge
	if err := s.backend.RemoveResource(r.Context(), sid, purge); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// managed checks that sid is configured, HA-managed and not in error.
func (s *Server) managed(ctx context.Context, sid ha.SID) (*Status, error) {
	st, err := s.backend.Status(ctx)
	if err != nil {
		return nil, err
	}
	cd := st.Resources[sid]
	if cd == nil {
		return nil, NotFound("service '%s' not configured", sid)
	}
	if cd.Requested() == ha.RequestIgnored || (st.Manager != nil && st.Manager.Disarm != nil && st.Manager.Disarm.Mode == ha.DisarmIgnore) {
		return nil, Conflict("service '%s' is not HA managed (ignored)", sid)
	}
	if e := inError(st, sid); e != nil {
		return nil, e
	}
	if e := disarmed(st); e != nil {
		return nil, e
	}
	return st, nil
}

// disarmed refuses commands the CRM would not carry out while the HA stack
// is disarmed (or disarming): they would wait silently until arm-ha.
func disarmed(st *Status) *Error {
	// A queued arm-ha or disarm-ha decides, the last one first.
	for i := len(st.Commands) - 1; i >= 0; i-- {
		switch c := st.Commands[i]; {
		case c == "arm-ha":
			return nil
		case strings.HasPrefix(c, "disarm-ha"):
			return Conflict("the HA stack is being disarmed (%s queued): services do not move or stop until `haxd ha crm-command arm-ha`", c)
		}
	}
	if st.Manager != nil && st.Manager.Disarm != nil {
		return Conflict("the HA stack is %s (resource mode %s): services do not move or stop until `haxd ha crm-command arm-ha`",
			st.Manager.Disarm.State, st.Manager.Disarm.Mode)
	}
	return nil
}

func inError(st *Status, sid ha.SID) *Error {
	if st.Manager != nil {
		if sd := st.Manager.ServiceStatus[sid]; sd != nil && sd.State == ha.StateError {
			return Conflict("service '%s' in error state, must be disabled and fixed first", sid)
		}
	}
	return nil
}

func (s *Server) move(task string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req MoveRequest
		if !s.decode(w, r, &req) {
			return
		}
		sid, ok := s.sid(w, r, req.SID)
		if !ok {
			return
		}
		if !s.nodeName(w, r, req.Node) {
			return
		}
		st, err := s.managed(r.Context(), sid)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if _, ok := st.Manager.NodeStatus[req.Node]; !ok {
			s.fail(w, r, BadRequest("node", req.Node, "no such cluster node"))
			return
		}
		s.queue(w, r, fmt.Sprintf("%s %s %s", task, sid, req.Node))
	}
}

func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	var req StopRequest
	if !s.decode(w, r, &req) {
		return
	}
	sid, ok := s.sid(w, r, req.SID)
	if !ok {
		return
	}
	if req.Timeout < 0 {
		s.fail(w, r, BadRequest("timeout", req.Timeout, "expected seconds >= 0"))
		return
	}
	if _, err := s.managed(r.Context(), sid); err != nil {
		s.fail(w, r, err)
		return
	}
	s.queue(w, r, fmt.Sprintf("stop %s %d", sid, req.Timeout))
}

func (s *Server) nodeMaintenance(w http.ResponseWriter, r *http.Request) {
	var req NodeMaintenanceRequest
	if !s.decode(w, r, &req) {
		return
	}
	if !s.nodeName(w, r, req.Node) {
		return
	}
	st, err := s.backend.Status(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if st.Manager == nil || st.Manager.NodeStatus[req.Node] == "" {
		s.fail(w, r, BadRequest("node", req.Node, "no such cluster node"))
		return
	}
	verb := "disable"
	if req.Enable {
		verb = "enable"
	}
	s.queue(w, r, fmt.Sprintf("%s-node-maintenance %s", verb, req.Node))
}

func (s *Server) disarm(w http.ResponseWriter, r *http.Request) {
	var req DisarmRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Mode != string(ha.DisarmFreeze) && req.Mode != string(ha.DisarmIgnore) {
		s.fail(w, r, BadRequest("mode", req.Mode, "expected freeze or ignore"))
		return
	}
	s.queue(w, r, "disarm-ha "+req.Mode)
}

func (s *Server) arm(w http.ResponseWriter, r *http.Request) { s.queue(w, r, "arm-ha") }

// textGet serves a config text (rules, groups) read by get.
func (s *Server) textGet(get func(context.Context) (string, error)) http.HandlerFunc {
	return serveGet(s, func(ctx context.Context) (Rules, error) {
		text, err := get(ctx)
		return Rules{Text: text}, err
	})
}

// textSet stores a config text (rules, groups) with set, which validates it.
func (s *Server) textSet(set func(context.Context, string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Rules
		if !s.decode(w, r, &req) {
			return
		}
		if err := set(r.Context(), req.Text); err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	}
}

func (s *Server) setDatacenter(w http.ResponseWriter, r *http.Request) {
	var req DatacenterRequest
	if !s.decode(w, r, &req) {
		return
	}
	if e := validateDatacenter(&req); e != nil {
		s.fail(w, r, e)
		return
	}
	err := s.backend.UpdateDatacenter(r.Context(), func(dc *ha.Datacenter) error {
		applyDatacenter(dc, &req)
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func validateDatacenter(req *DatacenterRequest) *Error {
	oneOf := func(field string, v *string, allowed ...string) *Error {
		if v != nil && !slices.Contains(allowed, *v) {
			return BadRequest(field, *v, "expected one of %s", strings.Join(allowed, ", "))
		}
		return nil
	}
	if e := oneOf("shutdown_policy", req.ShutdownPolicy, "conditional", "freeze", "failover", "migrate"); e != nil {
		return e
	}
	if e := oneOf("crs_mode", req.CRSMode, "basic", "static", "dynamic"); e != nil {
		return e
	}
	if e := oneOf("auto_rebalance_method", req.AutoRebalanceMethod, "bruteforce", "topsis"); e != nil {
		return e
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"auto_rebalance_threshold", req.AutoRebalanceThreshold}, {"auto_rebalance_margin", req.AutoRebalanceMargin}} {
		if f.v != nil && (*f.v < 0 || *f.v != *f.v) {
			return BadRequest(f.name, *f.v, "expected a number >= 0")
		}
	}
	if req.AutoRebalanceHoldDuration != nil && *req.AutoRebalanceHoldDuration < 0 {
		return BadRequest("auto_rebalance_hold_duration", *req.AutoRebalanceHoldDuration, "expected rounds >= 0")
	}
	return nil
}

func applyDatacenter(dc *ha.Datacenter, req *DatacenterRequest) {
	if dc.CRS.Set == nil {
		dc.CRS.Set = map[string]bool{}
	}
	if req.ShutdownPolicy != nil {
		dc.ShutdownPolicy = ha.ShutdownPolicy(*req.ShutdownPolicy)
	}
	if req.CRSMode != nil {
		dc.CRS.Mode = *req.CRSMode
	}
	if req.RebalanceOnStart != nil {
		dc.CRS.RebalanceOnStart = *req.RebalanceOnStart
	}
	if req.AutoRebalance != nil {
		dc.CRS.AutoRebalance = *req.AutoRebalance
	}
	if req.AutoRebalanceMethod != nil {
		dc.CRS.AutoRebalanceMethod = *req.AutoRebalanceMethod
	}
	if req.AutoRebalanceThreshold != nil {
		dc.CRS.AutoRebalanceThreshold = *req.AutoRebalanceThreshold
		dc.CRS.Set["ha-auto-rebalance-threshold"] = true
	}
	if req.AutoRebalanceHoldDuration != nil {
		dc.CRS.AutoRebalanceHoldDuration = *req.AutoRebalanceHoldDuration
		dc.CRS.Set["ha-auto-rebalance-hold-duration"] = true
	}
	if req.AutoRebalanceMargin != nil {
		dc.CRS.AutoRebalanceMargin = *req.AutoRebalanceMargin
		dc.CRS.Set["ha-auto-rebalance-margin"] = true
	}
}

func (s *Server) nodeRemove(w http.ResponseWriter, r *http.Request) {
	var req NodeRemoveRequest
	if !s.decode(w, r, &req) {
		return
	}
	if !s.nodeName(w, r, req.Node) {
		return
	}
	if err := s.backend.RemoveNode(r.Context(), req.Node); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) queue(w http.ResponseWriter, r *http.Request, line string) {
	if err := s.backend.QueueCRMCommand(r.Context(), line); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("queued crm command", "command", line)
	writeJSON(w, http.StatusOK, struct{}{})
}

// sid parses the request's SID, answering 400 naming the value when it is
// malformed.
func (s *Server) sid(w http.ResponseWriter, r *http.Request, raw string) (ha.SID, bool) {
	sid, err := ha.ParseSID(raw)
	if err != nil {
		s.fail(w, r, BadRequest("sid", raw, "expected type:name (%v)", err))
		return "", false
	}
	return sid, true
}

// nodeName reports whether name is a valid node name, answering 400
// naming the value when it is not.
func (s *Server) nodeName(w http.ResponseWriter, r *http.Request, name string) bool {
	if !ha.ValidNodeName(name) {
		s.fail(w, r, BadRequest("node", name, "not a valid node name"))
		return false
	}
	return true
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// rejected with a message naming them.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, r, &Error{Code: http.StatusRequestEntityTooLarge,
				Message: fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)})
			return false
		}
		msg := err.Error()
		if strings.HasPrefix(msg, "json: unknown field ") {
			msg = "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
		}
		s.fail(w, r, &Error{Code: http.StatusBadRequest, Message: "invalid request body: " + msg})
		return false
	}
	if dec.More() {
		s.fail(w, r, &Error{Code: http.StatusBadRequest, Message: "invalid request body: trailing data after the JSON object"})
		return false
	}
	return true
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *Error
	if !errors.As(err, &ae) {
		ae = &Error{Code: http.StatusInternalServerError, Message: err.Error()}
	}
	if !slices.Contains([]int{400, 404, 405, 409, 413}, ae.Code) {
		s.log.Error("api request failed", "path", r.URL.Path, "err", err)
	}
	writeJSON(w, ae.Code, ae)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

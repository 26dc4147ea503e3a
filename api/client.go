package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"

	"haxd/ha"
)

// Client talks to an agent's API over its unix socket, or over the HTTPS
// API listener (NewTLSClient).
type Client struct {
	http *http.Client
	// base is the URL prefix of every request.
	base string
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{http: &http.Client{Transport: tr}, base: "http://haxd"}
}

// NewTLSClient returns a client of the HTTPS API listener at addr
// (host:port) with the TLS config cfg (TLSClientConfig).
func NewTLSClient(addr string, cfg *tls.Config) *Client {
	tr := &http.Transport{TLSClientConfig: cfg}
	return &Client{http: &http.Client{Transport: tr}, base: "https://" + addr}
}

// Status fetches the cluster state.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
}

// AddResource adds a resource.
func (c *Client) AddResource(ctx context.Context, req AddResourceRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/resources", req, nil)
}

// SetResource changes a resource.
func (c *Client) SetResource(ctx context.Context, req SetResourceRequest) error {
	return c.do(ctx, http.MethodPut, "/v1/resources", req, nil)
}

// RemoveResource removes a resource.
func (c *Client) RemoveResource(ctx context.Context, req RemoveResourceRequest) error {
	return c.do(ctx, http.MethodDelete, "/v1/resources", req, nil)
}

// Migrate asks for a live migration; Relocate for stop, move, start.
func (c *Client) Migrate(ctx context.Context, req MoveRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/migrate", req, nil)
}

// Relocate asks to stop the service, move it and start it on req.Node.
func (c *Client) Relocate(ctx context.Context, req MoveRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/relocate", req, nil)
}

// Stop asks to stop a service within a timeout and keep it stopped.
func (c *Client) Stop(ctx context.Context, req StopRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/stop", req, nil)
}

// NodeMaintenance enables or disables maintenance of a node.
func (c *Client) NodeMaintenance(ctx context.Context, req NodeMaintenanceRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/node-maintenance", req, nil)
}

// Disarm disarms the HA stack.
func (c *Client) Disarm(ctx context.Context, req DisarmRequest) error {
	return c.do(ctx, http.MethodPost, "/v1/disarm", req, nil)
}

// Arm re-arms the HA stack.
func (c *Client) Arm(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/arm", struct{}{}, nil)
}

// Rules returns the rules config text.
func (c *Client) Rules(ctx context.Context) (string, error) {
	var r Rules
	err := c.do(ctx, http.MethodGet, "/v1/rules", nil, &r)
	return r.Text, err
}

// SetRules replaces the rules config.
func (c *Client) SetRules(ctx context.Context, text string) error {
	return c.do(ctx, http.MethodPut, "/v1/rules", Rules{Text: text}, nil)
}

// Groups returns the legacy HA groups config text.
func (c *Client) Groups(ctx context.Context) (string, error) {
	var r Rules
	err := c.do(ctx, http.MethodGet, "/v1/groups", nil, &r)
	return r.Text, err
}

// SetGroups replaces the legacy HA groups config.
func (c *Client) SetGroups(ctx context.Context, text string) error {
	return c.do(ctx, http.MethodPut, "/v1/groups", Rules{Text: text}, nil)
}

// Datacenter returns the cluster-wide settings.
func (c *Client) Datacenter(ctx context.Context) (*ha.Datacenter, error) {
	var dc ha.Datacenter
	return &dc, c.do(ctx, http.MethodGet, "/v1/datacenter", nil, &dc)
}

// SetDatacenter changes cluster-wide settings.
func (c *Client) SetDatacenter(ctx context.Context, req DatacenterRequest) error {
	return c.do(ctx, http.MethodPut, "/v1/datacenter", req, nil)
}

// RemoveNode removes a dead node.
func (c *Client) RemoveNode(ctx context.Context, node string) error {
	return c.do(ctx, http.MethodPost, "/v1/node-remove", NodeRemoveRequest{Node: node}, nil)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("contact agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Message != "" {
			e.Code = resp.StatusCode
			return &e
		}
		return &Error{Code: resp.StatusCode, Message: resp.Status}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s response: %w", path, err)
	}
	return nil
}

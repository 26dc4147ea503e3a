package integration

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"haxd/internal/cluster"
)

// chromiumFlags are the flags of every headless run (the brief of the CI).
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	// Chromium refuses DevTools websockets with an Origin header unless
	// allowed; the port is on loopback and lives as long as the test.
	"--remote-allow-origins=*"}

// cdp is a minimal Chrome DevTools Protocol client over one page's
// websocket.
type cdp struct {
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
}

// call sends method with params and decodes the result into out.
func (c *cdp) call(method string, params any, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	id := c.next
	if err := websocket.JSON.Send(c.ws, map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return fmt.Errorf("send %s: %w", method, err)
	}
	for {
		var msg struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		c.ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		if err := websocket.JSON.Receive(c.ws, &msg); err != nil {
			return fmt.Errorf("receive %s: %w", method, err)
		}
		if msg.ID != id {
			continue // an event or an older answer
		}
		if msg.Error != nil {
			return fmt.Errorf("%s: %s", method, msg.Error.Message)
		}
		if out == nil {
			return nil
		}
		return json.Unmarshal(msg.Result, out)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func (c *cdp) eval(expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := c.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("evaluate %q: %s", expr, res.ExceptionDetails.Text)
	}
	return json.Unmarshal(res.Result.Value, out)
}

// startChromium runs headless chromium with a fresh profile and
// returns a DevTools client for its first page.
func startChromium(t *testing.T) *cdp {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed (.ci/run installs it): the browser test cannot run")
	}
	// The profile lives outside the test's temp dir: chromium's helper
	// processes may still write to it for a moment after they are killed,
	// which would fail the temp dir's cleanup.
	profile, err := os.MkdirTemp("", "haxd-chromium-profile-")
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+profile, "--remote-debugging-port=0", "about:blank")
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group: kill every helper with it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		for range 50 { // helpers exit asynchronously
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove chromium profile %s", profile)
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-found:
	case <-time.After(60 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 60 s")
	}
	host := strings.TrimPrefix(browserWS, "ws://")
	host, _, _ = strings.Cut(host, "/")
	var pageWS string
	deadline := time.Now().Add(30 * time.Second)
	for pageWS == "" {
		resp, err := http.Get("http://" + host + "/json/list")
		if err == nil {
			var targets []struct{ Type, WebSocketDebuggerURL string }
			json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" {
					pageWS = tg.WebSocketDebuggerURL
				}
			}
		}
		if pageWS == "" {
			if time.Now().After(deadline) {
				t.Fatal("chromium has no page target")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ws, err := websocket.Dial(pageWS, "", "http://"+host)
	if err != nil {
		t.Fatalf("connect to the page: %v", err)
	}
	t.Cleanup(func() { ws.Close() })
	return &cdp{ws: ws}
}

// pageRow is one row of the page's node or service table.
type pageRow struct {
	Key, Node, State, Alive string
}

// TestStatusPageInBrowser: the status page of a real 3-node cluster, in
// headless chromium at a phone's size, shows every node and service; after
// a node is killed it shows that node as not alive and the service on its
// new node, without a reload; a screenshot is written to the test's temp
// dir.
func TestStatusPageInBrowser(t *testing.T) {
	h := startClusterWith(t, func(o *cluster.Options) { o.Metrics = true })
	tmp := t.TempDir()
	br := startChromium(t)
	master := h.startOnePerNode()
	victim := h.others(master)[0]
	// Watch through a node that survives.
	url := "http://" + h.cl.Node(master).Metrics + "/"

	if err := br.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}, nil); err != nil {
		t.Fatal(err)
	}
	if err := br.call("Page.navigate", map[string]any{"url": url}, nil); err != nil {
		t.Fatal(err)
	}
	rows := func(table string) []pageRow {
		var out []pageRow
		expr := fmt.Sprintf(`[...document.querySelectorAll("#%s tr")].map(r => ({Key: r.dataset.node && "%s" == "nodes" ? r.dataset.node : (r.dataset.sid || ""), Node: r.dataset.node || "", State: r.dataset.state || "", Alive: r.dataset.alive || ""}))`, table, table)
		if err := br.eval(expr, &out); err != nil {
			t.Logf("evaluate: %v", err)
			return nil
		}
		return out
	}
	h.waitFor(startDeadline, "the page to show 3 alive nodes and 3 started services", func() bool {
		nodes, svcs := rows("nodes"), rows("services")
		alive, started := 0, 0
		for _, n := range nodes {
			if n.Alive == "true" {
				alive++
			}
		}
		for _, s := range svcs {
			if s.State == "started" {
				started++
			}
		}
		return len(nodes) == 3 && alive == 3 && len(svcs) == 3 && started == 3
	})
	// A marker that a reload would erase.
	var ok bool
	if err := br.eval(`window.__haxdMarker = "kept"; true`, &ok); err != nil {
		t.Fatal(err)
	}
	var overflow bool
	if err := br.eval(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow); err != nil || overflow {
		t.Errorf("the page is wider than a 390 px phone screen (overflow %v, err %v)", overflow, err)
	}

	h.cl.KillNode(h.cl.Node(victim))
	to := h.waitMoved(svc(victim), victim, failoverDeadline)
	h.waitFor(failoverDeadline, "the page to show "+victim+" not alive and "+svc(victim)+" started on "+to, func() bool {
		deadShown, movedShown := false, false
		for _, n := range rows("nodes") {
			if n.Key == victim && n.Alive == "false" && n.State != "online" {
				deadShown = true
			}
		}
		for _, s := range rows("services") {
			if s.Key == svc(victim) && s.Node == to && s.State == "started" {
				movedShown = true
			}
		}
		return deadShown && movedShown
	})
	var marker string
	if err := br.eval(`window.__haxdMarker || "reloaded"`, &marker); err != nil || marker != "kept" {
		t.Errorf("the page was reloaded (marker %q, err %v): it must update itself", marker, err)
	}
	// Events are those this node saw as master: the fence is listed unless
	// mastership moved away from it meanwhile (a loaded machine can cost
	// the master its quorum for a moment).
	var text, shownMaster string
	if err := br.eval(`document.body.innerText`, &text); err != nil {
		t.Fatal(err)
	}
	if err := br.eval(`document.getElementById("master").textContent`, &shownMaster); err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.Contains(text, "fence_start: fencing node '"+victim+"'"):
	case !strings.HasPrefix(shownMaster, master+" "):
		t.Logf("mastership moved from %s to %s during the test: the fence is listed on the new master's page", master, shownMaster)
	default:
		t.Errorf("the page's event list lacks the fence of %s although %s stayed master:\n%s", victim, master, text)
	}

	var shot struct{ Data string }
	if err := br.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}, &shot); err != nil {
		t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(png) < 1000 {
		t.Fatalf("screenshot: %d bytes, %v", len(png), err)
	}
	path := filepath.Join(tmp, "status-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("HAXD_IT_KEEP"); keep != "" {
		kept := filepath.Join(h.dir, "status-page.png")
		os.WriteFile(kept, png, 0o644)
		t.Logf("screenshot kept: %s", kept)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

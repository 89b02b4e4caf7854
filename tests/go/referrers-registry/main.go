// Command referrers-registry is a TEST-ONLY OCI registry with the OCI 1.1 referrers API
// (GET /v2/<name>/referrers/<digest>), for regkeeper's real-process tests. It is
// google/go-containerregistry's pkg/registry (pinned in go.mod) with
// registry.WithReferrersSupport(true), served on 127.0.0.1 only.
//
// Usage:
//
//	referrers-registry -port 5123 [-spec-fixes=true] [-blobs-dir DIR] [-debug]
//
// It prints "listening on http://127.0.0.1:<port>" on stdout once the socket accepts
// connections, and one access-log line per request on stderr in the gorilla "combined" format
// distribution writes, so the tests parse both with the same code:
//
//	127.0.0.1 - - [02/Dec/2026:05:34:00 +0000] "GET /v2/ HTTP/1.1" 200 0 "" "oras/1.3.6"
//
// What pkg/registry v0.22.1 supports: push/pull of blobs (monolithic, chunked) and manifests,
// HEAD, tags/list (n and last, no Link header), _catalog (n only: no pagination, no Link
// header, unordered), DELETE of manifests (by digest or by tag: removes that one key) and of
// blobs (in the in-memory or -blobs-dir handler), and the referrers API.
//
// What it lacks (the tests must not expect these):
//   - no garbage collection of any kind: deleted manifests leave their blobs behind; a
//     reclaim job has nothing to run (reclaim mode "none");
//   - manifests live in memory only: a restart loses everything, so there is no read-only
//     mode and no restart on the same storage; -blobs-dir only keeps the blob bytes on disk;
//   - one global blob store: a blob pushed to one repository is visible (HEAD/GET) in every
//     repository, and a cross-repository mount (POST ?mount=&from=) is never done: it always
//     answers 202 with a new upload;
//   - no auth, no TLS, no rate limits;
//   - raw pkg/registry (-spec-fixes=false) also: reports a referrer's artifactType as its
//     config.mediaType even when the manifest has an artifactType field (so every OCI 1.1
//     artifact with the empty config reads "application/vnd.oci.empty.v1+json"), ignores the
//     ?artifactType= filter, returns referrers in random order, never sets OCI-Subject on a
//     manifest PUT, and a DELETE by digest leaves the tags that point at that manifest.
//
// -spec-fixes (default true) wraps the handler to fix exactly those five points as the OCI
// distribution spec 1.1 asks: artifactType from the manifest's artifactType field (else its
// config.mediaType), the artifactType filter with the OCI-Filters-Applied header, referrers
// sorted by digest, the OCI-Subject header on a PUT of a manifest with a subject, and a
// DELETE by digest also removing the tags that resolve to that digest (as distribution does).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (required)")
	specFixes := flag.Bool("spec-fixes", true, "fix pkg/registry's referrers/delete gaps (see the package doc)")
	blobsDir := flag.String("blobs-dir", "", "keep blob bytes in this directory instead of memory")
	debug := flag.Bool("debug", false, "also print pkg/registry's own log lines")
	flag.Parse()
	if *port <= 0 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "referrers-registry: -port is required (1-65535)")
		os.Exit(2)
	}

	opts := []registry.Option{registry.WithReferrersSupport(true)}
	if !*debug {
		opts = append(opts, registry.Logger(log.New(io.Discard, "", 0)))
	}
	if *blobsDir != "" {
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*blobsDir)))
	}
	var h http.Handler = registry.New(opts...)
	if *specFixes {
		h = &fixes{inner: h}
	}
	h = accessLog(h)

	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "referrers-registry: %v\n", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Printf("listening on http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintf(os.Stderr, "referrers-registry: %v\n", err)
		os.Exit(1)
	}
}

// -- access log -------------------------------------------------------------------------

type statusWriter struct {
	http.ResponseWriter
	status int
	size   int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += n
	return n, err
}

func accessLog(next http.Handler) http.Handler {
	logger := log.New(os.Stderr, "", 0)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		logger.Printf("%s - - [%s] %q %d %d %q %q", host, time.Now().UTC().Format("02/Jan/2006:15:04:05 -0700"),
			r.Method+" "+r.URL.RequestURI()+" "+r.Proto, sw.status, sw.size, r.Referer(), r.UserAgent())
	})
}

// -- spec fixes ---------------------------------------------------------------------------

type fixes struct{ inner http.Handler }

// path elements after "/v2/": name..., kind, ref
func split(p string) (name, kind, ref string, ok bool) {
	elems := strings.Split(strings.TrimPrefix(p, "/v2/"), "/")
	if !strings.HasPrefix(p, "/v2/") || len(elems) < 3 {
		return "", "", "", false
	}
	n := len(elems)
	return strings.Join(elems[:n-2], "/"), elems[n-2], elems[n-1], true
}

func (f *fixes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, kind, ref, ok := split(r.URL.Path)
	switch {
	case ok && kind == "manifests" && r.Method == http.MethodPut:
		f.putManifest(w, r)
	case ok && kind == "manifests" && r.Method == http.MethodDelete && strings.Contains(ref, ":"):
		f.deleteByDigest(w, r, name, ref)
	case ok && kind == "referrers" && r.Method == http.MethodGet:
		f.referrers(w, r, name)
	default:
		f.inner.ServeHTTP(w, r)
	}
}

// call the wrapped registry in-process
func (f *fixes) call(method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.inner.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

type subjectHeader struct {
	http.ResponseWriter
	subject string
}

func (w *subjectHeader) WriteHeader(code int) {
	if code == http.StatusCreated && w.subject != "" {
		w.Header().Set("OCI-Subject", w.subject)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (f *fixes) putManifest(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var m struct {
		Subject *struct {
			Digest string `json:"digest"`
		} `json:"subject"`
	}
	_ = json.Unmarshal(body, &m)
	sw := &subjectHeader{ResponseWriter: w}
	if m.Subject != nil {
		sw.subject = m.Subject.Digest
	}
	f.inner.ServeHTTP(sw, r)
}

func (f *fixes) deleteByDigest(w http.ResponseWriter, r *http.Request, name, digest string) {
	var tags []string
	if rec := f.call(http.MethodGet, "/v2/"+name+"/tags/list"); rec.Code == http.StatusOK {
		var tl struct {
			Tags []string `json:"tags"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &tl)
		for _, t := range tl.Tags {
			if f.call(http.MethodHead, "/v2/"+name+"/manifests/"+t).Header().Get("Docker-Content-Digest") == digest {
				tags = append(tags, t)
			}
		}
	}
	sw := &statusWriter{ResponseWriter: w}
	f.inner.ServeHTTP(sw, r)
	if sw.status == http.StatusAccepted {
		for _, t := range tags {
			f.call(http.MethodDelete, "/v2/"+name+"/manifests/"+t)
		}
	}
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

func (f *fixes) referrers(w http.ResponseWriter, r *http.Request, name string) {
	rec := f.call(http.MethodGet, r.URL.Path)
	if rec.Code != http.StatusOK {
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		return
	}
	var idx index
	if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	want := r.URL.Query().Get("artifactType")
	out := []descriptor{}
	for _, d := range idx.Manifests {
		var m struct {
			ArtifactType string `json:"artifactType"`
			Config       struct {
				MediaType string `json:"mediaType"`
			} `json:"config"`
		}
		_ = json.Unmarshal(f.call(http.MethodGet, "/v2/"+name+"/manifests/"+d.Digest).Body.Bytes(), &m)
		d.ArtifactType = m.ArtifactType
		if d.ArtifactType == "" {
			d.ArtifactType = m.Config.MediaType
		}
		if want == "" || d.ArtifactType == want {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	idx.Manifests = out
	body, _ := json.Marshal(idx)
	w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	if want != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// Package tether is a client for a Tether hub's API (tether.v1.HubApiService).
//
//	hub, err := tether.Connect("")            // the config tetherctl uses
//	if err != nil { ... }
//	defer hub.Close()
//	clusters, err := hub.API.ListClusters(ctx, &tetherv1.ListClustersRequest{})
//
// Hub.API is the generated client of every RPC (package tetherv1, generated from
// proto/tether/v1/api.proto by sdk/generate); the methods of Hub cover the common paths.
package tether

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"sigs.k8s.io/yaml"

	tetherv1 "github.com/tether-dev/tether/sdk/go/tether/v1"
)

// Config is the file tetherctl uses: where the hub is and the user's credential (PEM).
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Hub        string `json:"hub"`
	User       string `json:"user"`
	CA         string `json:"ca"`
	Cert       string `json:"cert"`
	Key        string `json:"key"`
}

// ErrNotAvailable is wrapped by WaitAvailable's errors: the rollout halted or time ran out.
var ErrNotAvailable = errors.New("workload not available")

// ConfigPath is path, else $TETHER_CONFIG, else ~/.tether/config.yaml (as tetherctl).
func ConfigPath(path string) string {
	if path != "" {
		return path
	}
	if env := os.Getenv("TETHER_CONFIG"); env != "" {
		return env
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".tether", "config.yaml")
}

// LoadConfig reads and checks a tetherctl config file.
func LoadConfig(path string) (*Config, error) {
	p := ConfigPath(path)
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read tether config %s: %w", p, err)
	}
	var c Config
	if err := yaml.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s is not valid YAML: %w", p, err)
	}
	if c.Kind != "ClientConfig" {
		return nil, fmt.Errorf("%s is not a tetherctl config (kind: ClientConfig)", p)
	}
	for field, v := range map[string]string{"hub": c.Hub, "ca": c.CA, "cert": c.Cert, "key": c.Key} {
		if v == "" {
			return nil, fmt.Errorf("%s: %s is missing", p, field)
		}
	}
	return &c, nil
}

// Hub is one connection to a hub.
type Hub struct {
	Conn *grpc.ClientConn
	API  tetherv1.HubApiServiceClient
}

// Connect dials the hub with the user's certificate: mutual TLS 1.3, the hub's CA only. The
// hub takes who the caller is from the certificate.
func Connect(path string) (*Hub, error) {
	c, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return ConnectWith(c)
}

// ConnectWith dials with an already loaded config.
func ConnectWith(c *Config) (*Hub, error) {
	pair, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
	if err != nil {
		return nil, fmt.Errorf("the config's cert and key: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(c.CA)) {
		return nil, errors.New("the config's ca holds no certificate")
	}
	host, _, err := net.SplitHostPort(c.Hub)
	if err != nil {
		return nil, fmt.Errorf("hub %q is not HOST:PORT: %w", c.Hub, err)
	}
	tlsConfig := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		RootCAs:      roots,
		Certificates: []tls.Certificate{pair},
		ServerName:   host,
	}
	const limit = 64 << 20 // workloads as large as the hub accepts
	conn, err := grpc.NewClient(c.Hub,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(limit), grpc.MaxCallSendMsgSize(limit)),
	)
	if err != nil {
		return nil, err
	}
	return &Hub{Conn: conn, API: tetherv1.NewHubApiServiceClient(conn)}, nil
}

// Close closes the connection.
func (h *Hub) Close() error { return h.Conn.Close() }

// Apply creates or updates a Workload (a document as in a Workload file, as JSON). An
// unchanged workload is answered with Changed false and no new revision.
func (h *Hub) Apply(ctx context.Context, workloadJSON []byte, team string) (*tetherv1.ApplyWorkloadResponse, error) {
	if !json.Valid(workloadJSON) {
		return nil, errors.New("the workload is not a JSON document")
	}
	return h.API.ApplyWorkload(ctx, &tetherv1.ApplyWorkloadRequest{WorkloadJson: string(workloadJSON), Team: team})
}

// WaitAvailable waits until every cluster the workload is placed on runs its current revision
// and is Available (what `tetherctl wait NAME --for available` waits for), polling every
// interval. It fails at once if the rollout halted, and when ctx ends.
func (h *Hub) WaitAvailable(ctx context.Context, name string, interval time.Duration) (*tetherv1.GetWorkloadStatusResponse, error) {
	for {
		s, err := h.API.GetWorkloadStatus(ctx, &tetherv1.GetWorkloadStatusRequest{Name: name})
		if err != nil {
			return nil, err
		}
		var placed, waiting []string
		for _, c := range s.GetClusters() {
			if c.GetPhase() == "Removing" || c.GetPhase() == "Retiring" {
				continue
			}
			placed = append(placed, c.GetCluster())
			// On the revision it should run, and that the current one (not held back by a rollout).
			if c.GetPhase() != "Available" || c.GetStale() || c.GetReportedRevision() != c.GetRevision() || c.GetOutdated() {
				why := c.GetPhase()
				if c.GetStale() {
					why += " (stale)"
				}
				if c.GetOutdated() {
					why += " (a newer revision waits in the rollout)"
				}
				waiting = append(waiting, c.GetCluster()+": "+why)
			}
		}
		if len(placed) > 0 && len(waiting) == 0 {
			return s, nil
		}
		r, err := h.API.GetRollout(ctx, &tetherv1.GetRolloutRequest{Name: name})
		if err != nil {
			return nil, err
		}
		if r.GetRollout().GetState() == "Halted" {
			return nil, fmt.Errorf("%w: workload/%s: the rollout of revision %d halted: %s",
				ErrNotAvailable, name, r.GetRollout().GetRevision(), r.GetRollout().GetReason())
		}
		select {
		case <-ctx.Done():
			detail := strings.Join(waiting, ", ")
			if len(placed) == 0 {
				detail = "placed on no cluster"
			}
			return nil, fmt.Errorf("%w: workload/%s: %s (%v)", ErrNotAvailable, name, detail, ctx.Err())
		case <-time.After(interval):
		}
	}
}

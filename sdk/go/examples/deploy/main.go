// Command deploy lists the member clusters, applies the Workloads in a file and waits until
// each is Available everywhere it is placed.
//
//	go run ./examples/deploy -f web.yaml [-config admin.yaml] [-team TEAM] [-timeout 5m]
//
// Exit codes: 0 all Available, 1 a failure (printed), 2 bad usage.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/tether-dev/tether/sdk/go/tether"
	tetherv1 "github.com/tether-dev/tether/sdk/go/tether/v1"
)

var separator = regexp.MustCompile(`(?m)^---[ \t]*$`)

func main() { os.Exit(run()) }

func run() int {
	file := flag.String("f", "", "a file of Workload documents (required)")
	config := flag.String("config", "", "tetherctl config [default: $TETHER_CONFIG, ~/.tether/config.yaml]")
	team := flag.String("team", "", "the team that owns the workloads")
	timeout := flag.Duration("timeout", 5*time.Minute, "how long to wait per workload")
	flag.Parse()
	if *file == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: deploy -f FILE [-config FILE] [-team TEAM] [-timeout 5m]")
		return 2
	}
	workloads, names, err := read(*file)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 2
	}

	hub, err := tether.Connect(*config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 2
	}
	defer hub.Close()
	ctx := context.Background()

	list, err := hub.API.ListClusters(ctx, &tetherv1.ListClustersRequest{})
	if err != nil {
		return refused(err)
	}
	for _, c := range list.GetClusters() {
		fmt.Printf("cluster %s: %s\n", c.GetName(), c.GetStatus())
	}
	for _, w := range workloads {
		r, err := hub.Apply(ctx, w, *team)
		if err != nil {
			return refused(err)
		}
		verb := "configured"
		switch {
		case !r.GetChanged():
			verb = "unchanged"
		case r.GetRevision() == 1:
			verb = "created"
		}
		clusters := strings.Join(r.GetClusters(), ", ")
		if clusters == "" {
			clusters = "none"
		}
		fmt.Printf("workload/%s %s (revision %d, clusters: %s)\n", r.GetName(), verb, r.GetRevision(), clusters)
	}
	for _, name := range names {
		wait, cancel := context.WithTimeout(ctx, *timeout)
		s, err := hub.WaitAvailable(wait, name, time.Second)
		cancel()
		if errors.Is(err, tether.ErrNotAvailable) {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			return 1
		}
		if err != nil {
			return refused(err)
		}
		var available []string
		for _, c := range s.GetClusters() {
			if c.GetPhase() == "Available" {
				available = append(available, c.GetCluster())
			}
		}
		fmt.Printf("workload/%s revision %d: Available on %d cluster(s): %s\n",
			name, s.GetRevision(), len(available), strings.Join(available, ", "))
	}
	return 0
}

// read returns the Workload documents of a YAML file as JSON, with their names.
func read(path string) ([][]byte, []string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var docs [][]byte
	var names []string
	for _, part := range separator.Split(string(raw), -1) {
		if strings.TrimSpace(part) == "" {
			continue
		}
		doc, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(doc, &head); err != nil || head.Kind != "Workload" {
			continue
		}
		docs = append(docs, doc)
		names = append(names, head.Metadata.Name)
	}
	if len(docs) == 0 {
		return nil, nil, fmt.Errorf("%s holds no Workload", path)
	}
	return docs, names, nil
}

// refused prints the hub's answer (its code and one-line message) and returns exit code 1.
func refused(err error) int {
	if s, ok := status.FromError(err); ok {
		fmt.Fprintf(os.Stderr, "error: the hub refused: %s: %s\n", s.Code(), s.Message())
	} else {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
	}
	return 1
}

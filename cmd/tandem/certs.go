package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tandem-io/tandem/cmd/internal/cli"
	"github.com/tandem-io/tandem/cmd/internal/material"
)

// certs writes a cluster's security material to a directory.
func certs(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory to write the material to (made if missing; an existing CA is never overwritten)")
	nodes := fs.String("nodes", "", "comma-separated node names to issue certificates for (each node's -name)")
	hosts := fs.String("hosts", "127.0.0.1,::1,localhost", "comma-separated IP addresses and host names every node certificate is valid for")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *dir == "" || *nodes == "" {
		return usageError{fmt.Errorf("certs: -dir and -nodes are required, e.g. tandem certs -dir ./certs -nodes a,b,c")}
	}
	names := splitList(*nodes)
	if err := material.Write(*dir, material.Options{Nodes: names, Hosts: splitList(*hosts)}); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	fmt.Fprintf(stdout, "wrote to %s: %s, %s, a certificate and key for each of %s, %s and %s\n",
		*dir, material.CACertFile, material.CAKeyFile, strings.Join(names, ", "), material.GossipFile, material.TokensFile)
	fmt.Fprintf(stdout, "start each node with: tandem serve -name NODE -certs-dir %s ...\n", *dir)
	fmt.Fprintf(stdout, "keep %s offline once the nodes have their certificates: it signs new members\n", material.CAKeyFile)
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

package web

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// openAPI is the part of docs/openapi.yaml the checks below read.
type openAPI struct {
	Paths      map[string]map[string]openAPIOperation `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Properties map[string]any `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

type openAPIOperation struct {
	Responses map[string]any `yaml:"responses"`
}

func readOpenAPI(t *testing.T) openAPI {
	t.Helper()
	data, err := os.ReadFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return doc
}

// TestOpenAPIRoutes checks that docs/openapi.yaml has every route of the API, no other,
// and documents the answers the auth and limits can give.
func TestOpenAPIRoutes(t *testing.T) {
	doc := readOpenAPI(t)
	s := &Server{}
	want := map[string]bool{}
	for _, rt := range s.routes() {
		key := strings.ToLower(rt.method) + " " + rt.path
		want[key] = true
		op, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]
		if !ok {
			t.Errorf("docs/openapi.yaml lacks %s %s", rt.method, rt.path)
			continue
		}
		needed := []string{"401", "429"}
		switch {
		case rt.access == mutate && rt.method == "POST" && rt.path == "/api/v1/jobs":
			needed = append(needed, "202", "400", "403", "409", "413")
		case rt.access == mutate:
			// Other writes take no body and no idempotency key; they answer 200 or 202.
			needed = append(needed, "403")
			if _, ok := op.Responses["200"]; !ok {
				needed = append(needed, "202")
			}
		default:
			needed = append(needed, "200")
		}
		for _, code := range needed {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("docs/openapi.yaml: %s %s does not document %s", rt.method, rt.path, code)
			}
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !want[method+" "+path] {
				t.Errorf("docs/openapi.yaml documents %s %s, which the server does not serve", strings.ToUpper(method), path)
			}
		}
	}
}

// TestOpenAPISchemas checks that each schema in docs/openapi.yaml has exactly the JSON
// fields of the Go type it describes, so that the document cannot drift from the code.
func TestOpenAPISchemas(t *testing.T) {
	doc := readOpenAPI(t)
	types := map[string]any{
		"Error": errorBody{}, "Info": Info{}, "JobRequest": JobRequest{}, "JobAccepted": JobAccepted{}, "JobList": JobList{},
		"JobCancel": JobCancel{}, "JobState": JobState{}, "SnapshotList": SnapshotList{}, "Source": Source{}, "SourceList": SourceList{},
		"EventList": EventList{}, "Replication": Replication{}, "ReplicationList": ReplicationList{},
		"PoolQueue": PoolQueue{}, "QueueList": QueueList{}, "QueuedList": QueuedList{}, "QueuedJob": QueuedJob{}, "WorkerList": WorkerList{}, "Analytics": Analytics{},
		"RepoList": RepoList{}, "RepoWorker": RepoWorker{}, "RepoInfo": brr.RepoInfo{}, "RepoSpec": brr.RepoSpec{},
		"SampleCount": SampleCount{}, "Group": Group{}, "Stats": Stats{},
		"Event": brr.Event{}, "Progress": brr.Progress{}, "Result": brr.Result{}, "BackupResult": brr.BackupResult{},
		"RestoreResult": brr.RestoreResult{}, "VerifyResult": brr.VerifyResult{}, "Damage": brr.Damage{},
		"PingResult": brr.PingResult{}, "ReplicateResult": brr.ReplicateResult{}, "PruneResult": brr.PruneResult{},
		"SnapshotDecision": brr.SnapshotDecision{}, "CheckpointResult": brr.CheckpointResult{}, "DrillResult": brr.DrillResult{},
		"Snapshot": brr.Snapshot{}, "RecoveryPoint": brr.RecoveryPoint{}, "CheckpointsReply": brr.CheckpointsReply{},
		"ReplicationLag": brr.ReplicationLag{}, "ReplicationInfo": brr.ReplicationInfo{}, "HealthReport": brr.HealthReport{},
		"HealthCheck": brr.HealthCheck{}, "WorkerInfo": brr.WorkerInfo{}, "JobRecord": state.JobRecord{},
		"SourceInfo": brr.SourceInfo{}, "SourceWatch": brr.SourceWatch{}, "SourceWatching": brr.SourceWatching{},
		"DeadLetterList": DeadLetterList{}, "DeadLetterEntry": brr.DeadLetterEntry{}, "DeadLettersRemoved": DeadLettersRemoved{},
		"RefusedRepo": brr.RefusedRepo{}, "RepoRegistration": brr.RepoRegistration{},
		"BackupJob": brr.BackupJob{}, "RestoreJob": brr.RestoreJob{}, "VerifyJob": brr.VerifyJob{},
		"ReplicateJob": brr.ReplicateJob{}, "PruneJob": brr.PruneJob{}, "RetentionPolicy": brr.RetentionPolicy{},
		"CheckpointJob": brr.CheckpointJob{}, "DrillJob": brr.DrillJob{}, "PingJob": brr.PingJob{},
		"Tree": Tree{}, "TreeEntry": brr.TreeEntry{}, "Diff": Diff{}, "Change": brr.Change{},
	}
	for name, v := range types {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("docs/openapi.yaml has no schema %s", name)
			continue
		}
		var documented []string
		for p := range schema.Properties {
			documented = append(documented, p)
		}
		sort.Strings(documented)
		fields := jsonFields(reflect.TypeOf(v))
		sort.Strings(fields)
		if !slices.Equal(documented, fields) {
			t.Errorf("schema %s has properties %v; the Go type has %v", name, documented, fields)
		}
	}
}

// jsonFields lists the JSON names of a struct's fields, those of embedded structs
// included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name == "-" || !f.IsExported():
		case name == "":
			out = append(out, f.Name)
		default:
			out = append(out, name)
		}
	}
	return out
}

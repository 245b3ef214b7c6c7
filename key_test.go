package brr_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/brr-dev/brr"
)

func TestKeyJobValidate(t *testing.T) {
	for _, c := range []struct {
		a  brr.KeyJob
		ok bool
	}{
		{brr.KeyJob{Action: "list"}, true},
		{brr.KeyJob{Action: "add", Repo: "offsite"}, true},
		{brr.KeyJob{Action: "add", PasswordFile: "new-2026.pw"}, true},
		{brr.KeyJob{Action: "remove", ID: "1a2b3c4d"}, true},
		{brr.KeyJob{Action: "passwd", ID: "1a2b", PasswordFile: "x.pw"}, true},
		{brr.KeyJob{Action: "rotate"}, false},
		{brr.KeyJob{Action: ""}, false},
		{brr.KeyJob{Action: "remove"}, false},
		{brr.KeyJob{Action: "remove", ID: "XYZ12345"}, false},
		{brr.KeyJob{Action: "list", ID: "1a2b3c4d"}, false},
		{brr.KeyJob{Action: "remove", ID: "1a2b3c4d", PasswordFile: "x"}, false},
		{brr.KeyJob{Action: "add", PasswordFile: "../etc/passwd"}, false},
		{brr.KeyJob{Action: "add", PasswordFile: "/etc/passwd"}, false},
		{brr.KeyJob{Action: "add", PasswordFile: ".hidden"}, false},
		{brr.KeyJob{Action: "add", Repo: "bad repo"}, false},
	} {
		err := c.a.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%+v: Validate() = %v, want ok=%v", c.a, err, c.ok)
		}
		if err != nil && !errors.Is(err, brr.ErrInvalid) {
			t.Errorf("%+v: %v does not wrap ErrInvalid", c.a, err)
		}
	}
}

func TestKeyJobRoundTrip(t *testing.T) {
	j := brr.NewJob(&brr.KeyJob{Action: brr.KeyPasswd, Repo: "local", ID: "1a2b3c4d", PasswordFile: "new.pw"})
	j.ID = "key-1"
	j.Pool = "default"
	data, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	got, err := brr.DecodeJob(data)
	if err != nil {
		t.Fatalf("DecodeJob(%s): %v", data, err)
	}
	a, ok := got.Args.(*brr.KeyJob)
	if !ok || got.Kind != brr.KindKey || *a != (brr.KeyJob{Action: brr.KeyPasswd, Repo: "local", ID: "1a2b3c4d", PasswordFile: "new.pw"}) {
		t.Fatalf("decoded %+v %+v", got, got.Args)
	}
}

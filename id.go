package brr

import (
	"crypto/rand"
	"encoding/base32"
	"strconv"
	"strings"
	"time"
)

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a new job or event id: the time in milliseconds in base 36, a dash and
// 16 random characters. Ids sort roughly by creation time and are valid Nats-Msg-Ids,
// KV keys and file names.
func NewID() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms.
	var sb strings.Builder
	sb.WriteString(strconv.FormatInt(time.Now().UnixMilli(), 36))
	sb.WriteByte('-')
	sb.WriteString(idEncoding.EncodeToString(b[:]))
	return sb.String()
}

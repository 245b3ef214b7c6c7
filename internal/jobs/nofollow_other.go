//go:build !unix

package jobs

const noFollow = 0

package repo

import (
	"encoding/binary"
	"fmt"
)

// A pack file is the encrypted blobs back to back, then the encrypted pack header, then
// the header's encrypted length as a uint32, little-endian. The header repeats what the
// index says about the pack's blobs, so a lost index can be rebuilt from the packs.
// A pack is named by the unkeyed BLAKE3 of all its bytes: ciphertext, so the name says
// nothing about the content, and a reader can check a pack without any key.

// PackedBlob says where a blob is stored.
type PackedBlob struct {
	Pack   ID
	Type   BlobType
	Offset uint32 // in the pack
	Length uint32 // stored length: nonce, ciphertext and tag
	// RawLength is the length of the blob's plaintext.
	RawLength uint32
}

// packEntry is one blob in a pack header or an index file.
type packEntry struct {
	Type      BlobType
	ID        ID
	Offset    uint32
	Length    uint32
	RawLength uint32
}

const (
	packHeaderVersion = 1
	entrySize         = 1 + 32 + 4 + 4 + 4
	packTrailerSize   = 4
)

func appendEntry(b []byte, e packEntry) []byte {
	b = append(b, byte(e.Type))
	b = append(b, e.ID[:]...)
	b = binary.LittleEndian.AppendUint32(b, e.Offset)
	b = binary.LittleEndian.AppendUint32(b, e.Length)
	return binary.LittleEndian.AppendUint32(b, e.RawLength)
}

func readEntry(b []byte) (packEntry, error) {
	var e packEntry
	e.Type = BlobType(b[0])
	if !e.Type.valid() {
		return e, fmt.Errorf("blob type %d", b[0])
	}
	copy(e.ID[:], b[1:33])
	e.Offset = binary.LittleEndian.Uint32(b[33:])
	e.Length = binary.LittleEndian.Uint32(b[37:])
	e.RawLength = binary.LittleEndian.Uint32(b[41:])
	if e.Length < Overhead+1 {
		return e, fmt.Errorf("blob %s: length %d is too short to be a blob", e.ID.Short(), e.Length)
	}
	if uint64(e.Offset)+uint64(e.Length) > 1<<32-1 {
		return e, fmt.Errorf("blob %s: offset %d + length %d overflow", e.ID.Short(), e.Offset, e.Length)
	}
	return e, nil
}

// encodePackHeader returns the plaintext of a pack header.
func encodePackHeader(entries []packEntry) []byte {
	b := make([]byte, 0, 1+len(entries)*entrySize)
	b = append(b, packHeaderVersion)
	for _, e := range entries {
		b = appendEntry(b, e)
	}
	return b
}

// decodePackHeader parses the plaintext of a pack header. Blobs must lie back to back from
// offset 0, in order.
func decodePackHeader(b []byte) ([]packEntry, error) {
	if len(b) < 1 || b[0] != packHeaderVersion {
		return nil, fmt.Errorf("decode pack header: unknown version")
	}
	b = b[1:]
	if len(b)%entrySize != 0 {
		return nil, fmt.Errorf("decode pack header: %d bytes is not a whole number of entries", len(b))
	}
	entries := make([]packEntry, 0, len(b)/entrySize)
	var next uint32
	for ; len(b) > 0; b = b[entrySize:] {
		e, err := readEntry(b)
		if err != nil {
			return nil, fmt.Errorf("decode pack header: %w", err)
		}
		if e.Offset != next {
			return nil, fmt.Errorf("decode pack header: blob %s at offset %d, want %d", e.ID.Short(), e.Offset, next)
		}
		next = e.Offset + e.Length
		entries = append(entries, e)
	}
	return entries, nil
}

// readPackHeader returns the entries of the pack whose bytes are data.
func (r *Repository) readPackHeader(data []byte) ([]packEntry, error) {
	if len(data) < packTrailerSize {
		return nil, fmt.Errorf("pack of %d bytes has no header", len(data))
	}
	hl := int64(binary.LittleEndian.Uint32(data[len(data)-packTrailerSize:]))
	start := int64(len(data)) - packTrailerSize - hl
	if hl < Overhead || start < 0 {
		return nil, fmt.Errorf("pack header length %d does not fit a pack of %d bytes", hl, len(data))
	}
	ct := append([]byte(nil), data[start:int64(len(data))-packTrailerSize]...)
	plain, err := decrypt(r.aead, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("pack header: %w", err)
	}
	entries, err := decodePackHeader(plain)
	if err != nil {
		return nil, err
	}
	if len(entries) > 0 {
		last := entries[len(entries)-1]
		if int64(last.Offset)+int64(last.Length) != start {
			return nil, fmt.Errorf("pack header: blobs end at %d, header starts at %d", last.Offset+last.Length, start)
		}
	}
	return entries, nil
}

package backend

// SizeInUse is the part of [Backend.Size] that holds live data: the disk
// space minus files Pebble no longer needs and has not deleted yet
// (obsolete and zombie tables, blob files and recycled WAL files). It is
// what etcd reports as db_size_in_use; [Backend.Compact] brings Size down
// towards it.
func (b *Backend) SizeInUse() int64 {
	m := b.db.Metrics()
	used := m.DiskSpaceUsage()
	free := m.WAL.ObsoletePhysicalSize +
		m.Table.Local.ObsoleteSize + m.Table.Local.ZombieSize +
		m.BlobFiles.Local.ObsoleteSize + m.BlobFiles.Local.ZombieSize
	if free > used {
		return 0
	}
	return int64(used - free)
}

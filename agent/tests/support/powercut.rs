//! A power-cut simulator: an in-memory FUSE file system that keeps, for every regular
//! file, a *durable* image (what the disk would hold after losing power) and a
//! *volatile* image (what readers see now).
//!
//! # Model
//!
//! * `write`, `truncate`/`ftruncate` (FUSE `setattr` with a size) and `fallocate` change
//!   the volatile image only.
//! * FUSE `fsync` on a file (sent by `fsync(2)` and by `fdatasync(2)`, both `datasync`
//!   modes) copies that file's volatile image to its durable image.
//! * Namespace operations (create, mknod, mkdir, unlink, rmdir, rename) take effect at
//!   once and survive a power cut, as on a journaling file system whose metadata
//!   journal commits in order, before any later operation (ext4 `data=ordered` with an
//!   immediate journal commit). A file that was created and never synced therefore
//!   survives a cut as an *empty* file; a file renamed over another after being written
//!   but not fsynced is empty after a cut (this model does not emulate ext4's
//!   `auto_da_alloc` rename heuristics, so it is stricter than ext4 there).
//! * Limits of that choice: a real file system may also *lose* namespace changes that
//!   were not followed by an `fsync` of the directory (`fsyncdir` is accepted and
//!   counted but changes nothing here), may keep part of an unsynced write, may tear a
//!   write, and may keep data written before a `sync_file_range` (which writes dirty
//!   pages but flushes no disk cache and no metadata). None of those is simulated: after
//!   a cut, every file holds exactly the bytes of its last `fsync`. Mode, owner and
//!   times are a single copy, applied at once. Hard links and symlinks are not
//!   supported.
//! * [`PowerCutFs::power_cut`] replaces, under one lock, every volatile image by its
//!   durable image; the mount stays usable ("the machine rebooted") and readers then
//!   see only durable data.
//! * Nothing else makes data durable: `flush` and `release` (what `close(2)` sends) do
//!   not; `sync_file_range(2)` is never forwarded to a FUSE daemon (the kernel only
//!   writes back dirty page-cache pages, and there are none, see below), so it makes
//!   nothing durable either.
//!
//! # Kernel interface
//!
//! * Every open is answered with `FOPEN_DIRECT_IO` and the mount does not ask for
//!   `FUSE_WRITEBACK_CACHE` (fuser asks only for `ASYNC_READ`, `BIG_WRITES` and
//!   `MAX_PAGES`): each `write(2)`/`pwrite(2)` reaches the daemon before the call
//!   returns, and each read is answered from the daemon, so no page cache can hide a
//!   power cut. Shared writable `mmap` of these files is therefore not available.
//! * Entry and attribute time-outs are zero, so sizes are asked for again after a cut.
//!   After a cut the kernel's caches of every inode are also invalidated.
//! * File locks: neither `FUSE_POSIX_LOCKS` nor `FUSE_FLOCK_LOCKS` is negotiated, so the
//!   kernel keeps `flock(2)`, POSIX and OFD (`fcntl`) locks itself for this mount
//!   (they work between processes; the daemon never sees them). They are released when
//!   their holder dies, and a power cut does not touch them.
//! * Mounting uses `mount(2)` directly when the process may (root or `CAP_SYS_ADMIN`
//!   with access to `/dev/fuse`); otherwise fuser falls back to the setuid helper
//!   `fusermount3` (Debian package `fuse3`).
//!
//! [`Stats`] reports counters and, per FUSE request kind, how many requests arrived, so
//! a test can check what the kernel sent for a given system call.

// A test-support module: a test binary that includes it need not use every item.
#![allow(dead_code)]

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, KernelConfig, LockOwner, MountOption, Notifier, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use nix::libc;
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;
const BLOCK: u32 = 4096;

/// Counters of one file, or of the whole mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// FUSE `write` requests.
    pub writes: u64,
    /// Bytes carried by those requests.
    pub bytes_written: u64,
    /// FUSE `fsync` requests on files (`fsync(2)` and `fdatasync(2)`).
    pub fsyncs: u64,
}

/// Per-file figures in [`Stats::files`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Counters of this file (they survive renames; not reset by a power cut).
    pub counters: Counters,
    /// Length of what readers see now.
    pub volatile_len: u64,
    /// Length of what would survive a power cut now.
    pub durable_len: u64,
    /// True when the volatile image differs from the durable one.
    pub unsynced: bool,
}

/// A snapshot of the mount's counters, taken by [`PowerCutFs::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Totals over all files, including files removed since.
    pub totals: Counters,
    /// How many times [`PowerCutFs::power_cut`] ran.
    pub power_cuts: u64,
    /// Every regular file now linked, by path relative to the mount point.
    pub files: BTreeMap<PathBuf, FileStats>,
    /// FUSE requests received, by operation name (`"write"`, `"fsync"`, `"flush"`, ...).
    /// Requests that fuser answers itself (`init`, `destroy`, `interrupt`, unknown
    /// opcodes) are not counted.
    pub requests: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Requests received since `earlier`, by operation name (only non-zero differences).
    pub fn requests_since(&self, earlier: &Stats) -> BTreeMap<&'static str, u64> {
        self.requests
            .iter()
            .filter_map(|(op, n)| {
                let d = n - earlier.requests.get(op).copied().unwrap_or(0);
                (d > 0).then_some((*op, d))
            })
            .collect()
    }
}

#[derive(Debug)]
enum Content {
    File { volatile: Vec<u8>, durable: Vec<u8> },
    Dir { entries: BTreeMap<OsString, u64> },
}

#[derive(Debug)]
struct Node {
    parent: u64,
    content: Content,
    perm: u16,
    uid: u32,
    gid: u32,
    /// Links of a regular file (1 while linked, 0 once unlinked). Directories compute it.
    links: u32,
    open_handles: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    counters: Counters,
}

#[derive(Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    next_fh: u64,
    totals: Counters,
    power_cuts: u64,
    requests: BTreeMap<&'static str, u64>,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    fn new(uid: u32, gid: u32) -> State {
        let now = SystemTime::now();
        let root = Node {
            parent: ROOT,
            content: Content::Dir {
                entries: BTreeMap::new(),
            },
            perm: 0o755,
            uid,
            gid,
            links: 1,
            open_handles: 0,
            atime: now,
            mtime: now,
            ctime: now,
            counters: Counters::default(),
        };
        State {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            next_fh: 1,
            totals: Counters::default(),
            power_cuts: 0,
            requests: BTreeMap::new(),
        }
    }

    fn count(&mut self, op: &'static str) {
        *self.requests.entry(op).or_insert(0) += 1;
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let (kind, size, nlink) = match &node.content {
            Content::File { volatile, .. } => {
                (FileType::RegularFile, volatile.len() as u64, node.links)
            }
            Content::Dir { entries } => {
                let subdirs = entries
                    .values()
                    .filter(|child| {
                        matches!(
                            self.nodes.get(child).map(|n| &n.content),
                            Some(Content::Dir { .. })
                        )
                    })
                    .count();
                (FileType::Directory, BLOCK as u64, 2 + subdirs as u32)
            }
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
            crtime: node.ctime,
            kind,
            perm: node.perm,
            nlink,
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            blksize: BLOCK,
            flags: 0,
        })
    }

    fn entries(&self, ino: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.nodes.get(&ino).ok_or(Errno::ENOENT)?.content {
            Content::Dir { entries } => Ok(entries),
            Content::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match &mut self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.content {
            Content::Dir { entries } => Ok(entries),
            Content::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(parent)?
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(
            self.nodes.get(&ino).map(|n| &n.content),
            Some(Content::Dir { .. })
        )
    }

    /// Adds a node named `name` in `parent`; fails if the name is taken.
    fn insert(
        &mut self,
        req: &Request,
        parent: u64,
        name: &OsStr,
        perm: u16,
        content: Content,
    ) -> Result<u64, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let now = SystemTime::now();
        self.nodes.insert(
            ino,
            Node {
                parent,
                content,
                perm,
                uid: req.uid(),
                gid: req.gid(),
                links: 1,
                open_handles: 0,
                atime: now,
                mtime: now,
                ctime: now,
                counters: Counters::default(),
            },
        );
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.touch_dir(parent, now);
        Ok(ino)
    }

    fn touch_dir(&mut self, ino: u64, now: SystemTime) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.mtime = now;
            node.ctime = now;
        }
    }

    /// Drops one link of `ino` (already removed from its directory); frees the node
    /// when nothing refers to it any more.
    fn unlinked(&mut self, ino: u64) {
        let free = match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.links = node.links.saturating_sub(1);
                node.ctime = SystemTime::now();
                node.links == 0 && node.open_handles == 0
            }
            None => false,
        };
        if free {
            self.nodes.remove(&ino);
        }
    }

    fn new_fh(&mut self, ino: u64) -> Result<FileHandle, Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        node.open_handles += 1;
        let fh = self.next_fh;
        self.next_fh += 1;
        Ok(FileHandle(fh))
    }

    fn released(&mut self, ino: u64) {
        let free = match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.open_handles = node.open_handles.saturating_sub(1);
                node.links == 0 && node.open_handles == 0
            }
            None => false,
        };
        if free {
            self.nodes.remove(&ino);
        }
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let src = self.child(parent, name)?;
        self.entries(newparent)?;
        let dst = self.entries(newparent)?.get(newname).copied();
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        // A directory may not move below itself.
        if self.is_dir(src) {
            let mut up = newparent;
            loop {
                if up == src {
                    return Err(Errno::EINVAL);
                }
                if up == ROOT {
                    break;
                }
                up = self.nodes.get(&up).map_or(ROOT, |n| n.parent);
            }
        }
        let now = SystemTime::now();
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let dst = dst.ok_or(Errno::ENOENT)?;
            if self.is_dir(dst) {
                let mut up = parent;
                loop {
                    if up == dst {
                        return Err(Errno::EINVAL);
                    }
                    if up == ROOT {
                        break;
                    }
                    up = self.nodes.get(&up).map_or(ROOT, |n| n.parent);
                }
            }
            self.entries_mut(parent)?.insert(name.to_owned(), dst);
            self.entries_mut(newparent)?.insert(newname.to_owned(), src);
            if let Some(n) = self.nodes.get_mut(&src) {
                n.parent = newparent;
                n.ctime = now;
            }
            if let Some(n) = self.nodes.get_mut(&dst) {
                n.parent = parent;
                n.ctime = now;
            }
            self.touch_dir(parent, now);
            self.touch_dir(newparent, now);
            return Ok(());
        }
        if let Some(dst) = dst {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if dst == src {
                return Ok(());
            }
            match (self.is_dir(src), self.is_dir(dst)) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !self.entries(dst)?.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(newparent)?.insert(newname.to_owned(), src);
        if let Some(n) = self.nodes.get_mut(&src) {
            n.parent = newparent;
            n.ctime = now;
        }
        if let Some(dst) = dst {
            if self.is_dir(dst) {
                self.nodes.remove(&dst);
            } else {
                self.unlinked(dst);
            }
        }
        self.touch_dir(parent, now);
        self.touch_dir(newparent, now);
        Ok(())
    }

    fn power_cut(&mut self) -> Vec<u64> {
        self.power_cuts += 1;
        let mut inodes = Vec::with_capacity(self.nodes.len());
        for (ino, node) in &mut self.nodes {
            if let Content::File { volatile, durable } = &mut node.content {
                volatile.clone_from(durable);
            }
            inodes.push(*ino);
        }
        inodes
    }

    fn stats(&self) -> Stats {
        let mut files = BTreeMap::new();
        let mut stack = vec![(ROOT, PathBuf::new())];
        while let Some((dir, path)) = stack.pop() {
            let Ok(entries) = self.entries(dir) else {
                continue;
            };
            for (name, ino) in entries {
                let Some(node) = self.nodes.get(ino) else {
                    continue;
                };
                let child = path.join(name);
                match &node.content {
                    Content::Dir { .. } => stack.push((*ino, child)),
                    Content::File { volatile, durable } => {
                        files.insert(
                            child,
                            FileStats {
                                counters: node.counters,
                                volatile_len: volatile.len() as u64,
                                durable_len: durable.len() as u64,
                                unsynced: volatile != durable,
                            },
                        );
                    }
                }
            }
        }
        Stats {
            totals: self.totals,
            power_cuts: self.power_cuts,
            files,
            requests: self.requests.clone(),
        }
    }
}

fn resolve(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn perm_of(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

/// The FUSE side: each request takes the state lock for its whole duration.
struct Daemon {
    shared: Shared,
}

impl Daemon {
    fn state(&self, op: &'static str) -> MutexGuard<'_, State> {
        let mut state = lock(&self.shared);
        state.count(op);
        state
    }

    fn count(&self, op: &'static str) {
        lock(&self.shared).count(op);
    }

    fn entry(state: &State, ino: Result<u64, Errno>, reply: ReplyEntry) {
        match ino.and_then(|ino| state.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

impl Filesystem for Daemon {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> io::Result<()> {
        lock(&self.shared).count("init");
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.state("lookup");
        let ino = state.child(parent.0, name);
        Self::entry(&state, ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state("getattr").attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state("setattr");
        let result = (|| {
            let node = state.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            let now = SystemTime::now();
            if let Some(size) = size {
                match &mut node.content {
                    Content::File { volatile, .. } => {
                        let size = usize::try_from(size).map_err(|_| Errno::EFBIG)?;
                        volatile.resize(size, 0);
                        node.mtime = now;
                    }
                    Content::Dir { .. } => return Err(Errno::EISDIR),
                }
            }
            if let Some(mode) = mode {
                node.perm = (mode & 0o7777) as u16;
            }
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            if let Some(t) = atime {
                node.atime = resolve(t);
            }
            if let Some(t) = mtime {
                node.mtime = resolve(t);
            }
            node.ctime = ctime.unwrap_or(now);
            state.attr(ino.0)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state("mknod");
        let ino = if mode & libc::S_IFMT != libc::S_IFREG {
            Err(Errno::EPERM)
        } else {
            let content = Content::File {
                volatile: Vec::new(),
                durable: Vec::new(),
            };
            state.insert(req, parent.0, name, perm_of(mode, umask), content)
        };
        Self::entry(&state, ino, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state("mkdir");
        let content = Content::Dir {
            entries: BTreeMap::new(),
        };
        let ino = state.insert(req, parent.0, name, perm_of(mode, umask), content);
        Self::entry(&state, ino, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state("unlink");
        let result = (|| {
            let ino = state.child(parent.0, name)?;
            if state.is_dir(ino) {
                return Err(Errno::EISDIR);
            }
            state.entries_mut(parent.0)?.remove(name);
            state.touch_dir(parent.0, SystemTime::now());
            state.unlinked(ino);
            Ok(())
        })();
        Self::empty(result, reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut state = self.state("rmdir");
        let result = (|| {
            let ino = state.child(parent.0, name)?;
            if !state.entries(ino)?.is_empty() {
                return Err(Errno::ENOTEMPTY);
            }
            state.entries_mut(parent.0)?.remove(name);
            state.touch_dir(parent.0, SystemTime::now());
            state.nodes.remove(&ino);
            Ok(())
        })();
        Self::empty(result, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self
            .state("rename")
            .rename(parent.0, name, newparent.0, newname, flags);
        Self::empty(result, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state("open");
        let result = if state.is_dir(ino.0) {
            Err(Errno::EISDIR)
        } else {
            state.new_fh(ino.0)
        };
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state("create");
        let content = Content::File {
            volatile: Vec::new(),
            durable: Vec::new(),
        };
        let result = state
            .insert(req, parent.0, name, perm_of(mode, umask), content)
            .and_then(|ino| Ok((state.new_fh(ino)?, state.attr(ino)?)));
        match result {
            Ok((fh, attr)) => {
                reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::FOPEN_DIRECT_IO)
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.state("read");
        match state.nodes.get(&ino.0).map(|n| &n.content) {
            Some(Content::File { volatile, .. }) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(volatile.len());
                let end = start.saturating_add(size as usize).min(volatile.len());
                reply.data(&volatile[start..end]);
            }
            Some(Content::Dir { .. }) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state("write");
        let result = (|| {
            let node = state.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            let Content::File { volatile, .. } = &mut node.content else {
                return Err(Errno::EISDIR);
            };
            let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
            let end = start.checked_add(data.len()).ok_or(Errno::EFBIG)?;
            if volatile.len() < end {
                volatile.resize(end, 0);
            }
            volatile[start..end].copy_from_slice(data);
            let now = SystemTime::now();
            node.mtime = now;
            node.ctime = now;
            node.counters.writes += 1;
            node.counters.bytes_written += data.len() as u64;
            Ok(())
        })();
        match result {
            Ok(()) => {
                state.totals.writes += 1;
                state.totals.bytes_written += data.len() as u64;
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Deliberately not a sync: close(2) makes nothing durable.
        let state = self.state("flush");
        let result = state.nodes.get(&ino.0).map(|_| ()).ok_or(Errno::ENOENT);
        Self::empty(result, reply);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.state("release").released(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state(if datasync { "fsync(datasync)" } else { "fsync" });
        let result = match state.nodes.get_mut(&ino.0) {
            Some(node) => {
                if let Content::File { volatile, durable } = &mut node.content {
                    durable.clone_from(volatile);
                }
                node.counters.fsyncs += 1;
                Ok(())
            }
            None => Err(Errno::ENOENT),
        };
        if result.is_ok() {
            state.totals.fsyncs += 1;
        }
        Self::empty(result, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let state = self.state("opendir");
        match state.entries(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state("readdir");
        let entries = match state.entries(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        let parent = state.nodes.get(&ino.0).map_or(ROOT, |n| n.parent);
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (parent, FileType::Directory, OsStr::new("..")),
        ];
        let children = entries.iter().map(|(name, child)| {
            let kind = if state.is_dir(*child) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            (*child, kind, name.as_os_str())
        });
        for (index, (child, kind, name)) in dots
            .into_iter()
            .chain(children)
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(INodeNo(child), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.count("releasedir");
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // The namespace is always durable in this model.
        let result = self.state("fsyncdir").entries(ino.0).map(|_| ());
        Self::empty(result, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let state = self.state("statfs");
        let used: u64 = state
            .nodes
            .values()
            .map(|n| match &n.content {
                Content::File { volatile, .. } => (volatile.len() as u64).div_ceil(BLOCK as u64),
                Content::Dir { .. } => 1,
            })
            .sum();
        let blocks = 1 << 22; // 16 GiB of 4 KiB blocks
        let files = 1 << 20;
        let free = blocks - used.min(blocks);
        let ffree = files - (state.nodes.len() as u64).min(files);
        reply.statfs(blocks, free, free, files, ffree, BLOCK, 255, BLOCK);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // No permission model: anything that exists may be accessed.
        let state = self.state("access");
        let result = state.nodes.get(&ino.0).map(|_| ()).ok_or(Errno::ENOENT);
        Self::empty(result, reply);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state("fallocate");
        let result = (|| {
            let node = state.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            let Content::File { volatile, .. } = &mut node.content else {
                return Err(Errno::EISDIR);
            };
            let start = usize::try_from(offset).map_err(|_| Errno::EFBIG)?;
            let len = usize::try_from(length).map_err(|_| Errno::EFBIG)?;
            let end = start.checked_add(len).ok_or(Errno::EFBIG)?;
            let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
            let zero = match mode & !libc::FALLOC_FL_KEEP_SIZE {
                0 => false,
                libc::FALLOC_FL_PUNCH_HOLE if keep_size => true,
                libc::FALLOC_FL_ZERO_RANGE => true,
                _ => return Err(Errno::EOPNOTSUPP),
            };
            if zero {
                let stop = end.min(volatile.len());
                if start < stop {
                    volatile[start..stop].fill(0);
                }
            }
            if !keep_size && volatile.len() < end {
                volatile.resize(end, 0);
            }
            node.ctime = SystemTime::now();
            Ok(())
        })();
        Self::empty(result, reply);
    }

    // Requests below are not supported; they are answered like fuser's defaults, but
    // counted, so tests can see whether the kernel sent them.

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        self.count("getxattr");
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        self.count("listxattr");
        reply.error(Errno::ENOSYS);
    }

    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        reply: fuser::ReplyLock,
    ) {
        self.count("getlk");
        reply.error(Errno::ENOSYS);
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        self.count("setlk");
        reply.error(Errno::ENOSYS);
    }
}

/// A mounted power-cut file system; the FUSE session runs on a background thread.
///
/// Dropping it unmounts (lazily, if something on the mount is still open, for example
/// after a test panicked while a child process was still running).
pub struct PowerCutFs {
    shared: Shared,
    session: Option<BackgroundSession>,
    notifier: Notifier,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for PowerCutFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PowerCutFs")
            .field("mountpoint", &self.mountpoint)
            .finish_non_exhaustive()
    }
}

impl PowerCutFs {
    /// Mounts an empty file system on `mountpoint` (an existing directory) and returns
    /// once the kernel has completed the FUSE handshake, so the mount is live.
    pub fn mount(mountpoint: &Path) -> io::Result<PowerCutFs> {
        let mountpoint = mountpoint.canonicalize()?;
        // The root directory belongs to whoever owns the mount point.
        let meta = std::fs::metadata(&mountpoint)?;
        let shared: Shared = Arc::new(Mutex::new(State::new(meta.uid(), meta.gid())));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("powercut".to_owned()),
            MountOption::Subtype("powercut".to_owned()),
            MountOption::RW,
            MountOption::NoAtime,
        ];
        let daemon = Daemon {
            shared: Arc::clone(&shared),
        };
        let session = fuser::spawn_mount(daemon, &mountpoint, &config)?;
        let notifier = session.notifier();
        Ok(PowerCutFs {
            shared,
            session: Some(session),
            notifier,
            mountpoint,
        })
    }

    /// The machine loses power and reboots: every file's content becomes what its last
    /// `fsync` made durable (empty if it never had one). Atomic with respect to every
    /// FUSE request; the mount stays usable and the kernel's caches are dropped.
    ///
    /// Call it when no process is using the mount any more (kill writers first): open
    /// file descriptors stay valid but now see the durable content.
    pub fn power_cut(&self) {
        let inodes = lock(&self.shared).power_cut();
        // Outside the lock: the kernel may need the daemon while invalidating. With
        // direct I/O and zero time-outs there is normally nothing cached; inodes the
        // kernel does not know answer ENOENT, which is fine.
        for ino in inodes {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, -1);
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared).stats()
    }

    /// Where the file system is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for PowerCutFs {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // A file on the mount may still be closing: a store's I/O thread finishing its
        // last write after the store itself was dropped (sled's). Keep answering it
        // until the mount is free. Detaching at once would end this daemon while that
        // file is open, and its close — at the latest when this process exits — would
        // wait for the daemon forever (a test binary that never exits).
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::empty()) {
                Ok(()) => {
                    // The kernel ended the connection: the session thread returns.
                    let _ = session.join();
                    return;
                }
                Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
        // Still busy (a child process that outlived a failed test) or already gone:
        // detach the mount point; the session keeps answering what is still open.
        let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
        std::mem::forget(session);
    }
}

package io.qblk.cli;

import io.qblk.qcow2.SnapshotInfo;
import io.qblk.util.Sizes;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;

/**
 * The snapshot table as {@code qemu-img snapshot -l} and {@code qemu-img info} print it: a title, a
 * header and one row per snapshot in fixed-width columns (ID, TAG, VM SIZE, DATE in local time,
 * VM CLOCK as hh:mm:ss.mmm, ICOUNT, empty when not recorded). No snapshots: no lines at all.
 */
final class SnapshotList {
    private static final DateTimeFormatter DATE = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss");

    private SnapshotList() {}

    static List<String> lines(List<SnapshotInfo> snapshots) {
        List<String> out = new ArrayList<>();
        if (snapshots.isEmpty()) return out;
        out.add("Snapshot list:");
        out.add(String.format("%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"));
        for (SnapshotInfo s : snapshots) {
            String date = DATE.format(Instant.ofEpochSecond(s.dateSec()).atZone(ZoneId.systemDefault()));
            long secs = s.vmClockNsec() / 1_000_000_000L;
            String clock = String.format("%02d:%02d:%02d.%03d", secs / 3600, (secs / 60) % 60, secs % 60, (s.vmClockNsec() / 1_000_000) % 1000);
            String icount = s.icount() == -1 ? "" : Long.toString(s.icount());
            out.add(String.format("%-9s %-16s %8s%20s%13s%11s", s.id(), s.name(), Sizes.human(s.vmStateSize()), date, clock, icount));
        }
        return out;
    }
}

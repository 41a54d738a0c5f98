package io.qblk.service;

import com.fasterxml.jackson.annotation.JsonCreator;
import com.fasterxml.jackson.annotation.JsonValue;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** What a device serves: a qcow2 image, a raw file, or nothing (null target). */
public enum TargetType {
    QCOW2, RAW, NULL;

    @JsonValue
    public String id() { return name().toLowerCase(Locale.ROOT); }

    @JsonCreator
    public static TargetType parse(String s) {
        for (TargetType t : values()) if (t.id().equalsIgnoreCase(s)) return t;
        throw new IllegalArgumentException("unknown target '" + s + "' (expected one of " + choices() + ")");
    }

    public static String choices() {
        return Arrays.stream(values()).map(TargetType::id).collect(Collectors.joining(", "));
    }
}

-- A sequence number per room: every stored room message gets the next one of its room, assigned in
-- the transaction that stores it (under the room's row in room_sequences), and carried to clients
-- in `newMessage` as `seq`. Per room, never global: rooms never wait on each other.
CREATE TABLE room_sequences (
    room_id  text PRIMARY KEY,
    last_seq bigint NOT NULL
);

ALTER TABLE messages ADD COLUMN room_seq bigint;

-- Messages stored before this migration are numbered in their storage order.
UPDATE messages m SET room_seq = n.rn
FROM (SELECT seq, row_number() OVER (PARTITION BY room_id ORDER BY seq) AS rn FROM messages) n
WHERE m.seq = n.seq;
UPDATE messages SET payload = payload || jsonb_build_object('seq', room_seq)
WHERE payload->>'roomId' IS NOT NULL;
INSERT INTO room_sequences (room_id, last_seq) SELECT room_id, max(room_seq) FROM messages GROUP BY room_id;

ALTER TABLE messages ALTER COLUMN room_seq SET NOT NULL;

-- Gatekeeper numbers its messages itself (infra/messages.py, which also puts `seq` in the payload);
-- a row inserted without a number (an operator's script, a fixture) gets the next one here.
CREATE FUNCTION messages_room_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.room_seq IS NULL THEN
        INSERT INTO room_sequences (room_id, last_seq) VALUES (NEW.room_id, 1)
        ON CONFLICT (room_id) DO UPDATE SET last_seq = room_sequences.last_seq + 1
        RETURNING last_seq INTO NEW.room_seq;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_room_seq BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION messages_room_seq();
CREATE UNIQUE INDEX messages_room_room_seq ON messages (room_id, room_seq);

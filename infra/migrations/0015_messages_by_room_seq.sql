-- Room history is paged by room_seq (joinRoom sinceSeq, GET /api/rooms/{roomId}/messages), and a
-- room_seq is never given twice in one room: the unique index serves the pages and guards that.
CREATE UNIQUE INDEX messages_room_id_room_seq ON messages (room_id, room_seq);

from chat_session.main import run

run()
